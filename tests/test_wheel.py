"""The installed package stands on its own: the wheel built from this checkout (through its sdist), installed
into a new virtualenv outside the checkout, passes ``ascend-doctor selfcheck`` against the golden vectors it
ships and runs ``ascend-doctor demo`` on the examples it ships, with nothing of the checkout importable.

The new venv gets torch, transformers and the other dependencies from this interpreter's site-packages
through a ``.pth`` file naming that directory: a directory listed in a ``.pth`` file joins ``sys.path``
but the ``.pth`` files inside it are not run, so an editable install of this checkout stays invisible
(asserted below). The build needs setuptools from the package index pip is configured with.
"""

import email.parser
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = sorted(os.listdir(os.path.join(ROOT, "ascend_tools", "ops", "golden")))
EXAMPLES = ("llama_7b.py", "train_cuda.py", "train_ddp.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), ROOT],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """(venv python, an empty working directory, a clean environment) with the wheel installed. Every
    command runs there: from the checkout, ``python -m`` would see its egg-info (cwd is on sys.path)."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join((str(home / "bin"), env.get("PATH", "")))
    venv_python = (str(home / "bin" / "python"), tmp_path_factory.mktemp("work"), env)
    pip = run(venv_python, "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))
    assert pip.returncode == 0, pip.stderr
    site = run(venv_python, "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    with open(os.path.join(site.stdout.strip(), "outer_site_packages.pth"), "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in outer))
    return venv_python


def inside(path, directory):
    return os.path.realpath(path).startswith(os.path.realpath(directory) + os.sep)


def run(installed, *cmd, timeout=300):
    python, work, env = installed
    exe = os.path.join(os.path.dirname(python), cmd[0])
    return subprocess.run([exe, *cmd[1:]], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_ships_the_data_and_no_pyyaml_outside_dev(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = email.parser.Parser().parsestr(zf.read(metadata).decode()).get_all("Requires-Dist")
    assert GOLDEN and {f"ascend_tools/ops/golden/{g}" for g in GOLDEN} <= names
    assert {f"ascend_tools/examples/{e}" for e in EXAMPLES} <= names
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]
    if shutil.which("cc"):  # the optional compiled statistics kernel is built wherever a compiler is
        assert [n for n in names if n.startswith("ascend_tools/precision/_moments.")]
    yaml = [r for r in requires if r.lower().startswith("pyyaml")]
    assert yaml and all(r.replace(" ", "").endswith('extra=="dev"') for r in yaml)


def test_installed_copy_is_the_one_imported(installed):
    code = (
        "import sys, ascend_tools, torch, transformers; "
        "print(ascend_tools.__file__); print([m for m in sys.modules if m.startswith('__editable__')])"
    )
    res = run(installed, "python", "-c", code)
    assert res.returncode == 0, res.stderr
    path, editable_finders = res.stdout.splitlines()
    assert inside(path, os.path.dirname(os.path.dirname(installed[0]))) and not inside(path, ROOT)
    assert editable_finders == "[]"  # the .pth file named the outer site-packages, not run its .pth files


def test_selfcheck_checks_the_shipped_golden_vectors(installed):
    res = run(installed, "ascend-doctor", "selfcheck", "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert inside(doc["golden_dir"], os.path.dirname(os.path.dirname(installed[0])))
    counts = {op: sum(g.startswith(op + "_") for g in GOLDEN) for op in doc["golden_cases"]}
    assert doc["golden_cases"] == counts and set(counts) == {
        "rms_norm",
        "rope",
        "attention",
        "swiglu",
        "linear_cross_entropy",
    }
    assert doc["failed"] == 0 and all(r["cases"] == counts[r["op"]] for r in doc["results"])


def test_demo_runs_on_the_shipped_examples(installed):
    res = run(installed, "ascend-doctor", "demo", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    out = installed[1] / "ascend-doctor-demo"
    stems = ("check-ops-llama_7b", "check-ops-train_cuda", "compare", "selfcheck", "analyze", "env")
    for stem in stems:
        for ext in ("html", "md", "json"):
            assert (out / f"{stem}.{ext}").is_file(), f"{stem}.{ext}"
    assert (out / "profile-trace.json").is_file()


def test_the_installed_compare_replays_in_its_replay_process(installed):
    """The console script's compare of the demo's dumps: its replay process (spawned, importing the installed
    package, never the checkout) proves the demo's injected fault."""
    out = installed[1] / "ascend-doctor-demo"
    dumps = out / "precision-dumps"
    if not dumps.is_dir():
        assert run(installed, "ascend-doctor", "demo", timeout=600).returncode == 0
    report = installed[1] / "compare-cli.json"
    res = run(
        installed,
        "ascend-doctor",
        "compare",
        str(dumps / "target-bf16"),
        str(dumps / "reference-fp32"),
        "-f",
        "json",
        "-o",
        str(report),
    )
    assert res.returncode == 1, res.stdout + res.stderr  # a proven culprit
    doc = json.loads(report.read_text())
    assert any(p["method"] == "replay" for p in doc["pairs"])
    assert doc["summary"]["problems"] == 0
    assert [c["name"] for c in doc["culprits"]] == ["aten::mm#forward#12"]
