"""Unknown missing modules the user's code imports get opaque stand-ins (opcheck/opaque_modules.py)."""

import importlib
import sys

import pytest
import torch
from test_script_run import check_ops, ops_of

from ascend_tools.opcheck import opaque_modules

TRAIN = """
import torch
import notinstalled_pkg
from notinstalled_pkg.client import Client

def report(metrics):
    notinstalled_pkg.log(metrics)  # never called in the traced step

model = torch.nn.Linear(4, 2).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = {x}
model(x).sum().backward()
opt.step()
"""

OPTIONAL = """
try:
    import notinstalled_optional
except ImportError:
    notinstalled_optional = None
assert notinstalled_optional is None, "a guarded import must keep seeing ImportError"
"""


def test_a_missing_module_used_off_the_step_is_stood_in_and_reported(tmp_path):
    (tmp_path / "optional.py").write_text(OPTIONAL)
    (tmp_path / "train.py").write_text("import optional\n" + TRAIN.format(x="torch.ones(3, 4).cuda()"))
    proc, report = check_ops(tmp_path, "python", str(tmp_path / "train.py"))
    assert report is not None, proc.stderr
    assert report["trace"]["complete"], report["trace"]["stopped"]
    assert "aten::addmm" in ops_of(report)
    missing = [f for f in report["source_findings"] if f["rule"] == "missing-module"]
    assert [(f["file"].rsplit("/", 1)[-1], f["line"], f["severity"]) for f in missing] == [
        ("train.py", 4, "warning")
    ]
    assert missing[0]["message"].startswith("notinstalled_pkg: not installed here; stood in for by an opaque")
    assert proc.returncode == 0


def test_an_opaque_value_reaching_the_model_stops_the_trace_naming_its_module(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN.format(x="notinstalled_pkg.load_batch('data.bin')"))
    proc, report = check_ops(tmp_path, "python", str(tmp_path / "train.py"))
    assert report is not None, proc.stderr
    stopped = report["trace"]["stopped"]
    assert not report["trace"]["complete"]
    assert "a value from notinstalled_pkg.load_batch (not installed here" in stopped, stopped
    assert "train.py:12" in stopped  # model(x)
    assert proc.returncode == 1


@pytest.fixture
def finder():
    found = opaque_modules.OpaqueFinder()
    sys.meta_path.append(found)
    yield found
    sys.meta_path.remove(found)
    for name in [m for m in sys.modules if m.startswith("notinstalled_")]:
        del sys.modules[name]


def test_library_probes_and_find_spec_still_see_the_module_absent(finder):
    """transformers/accelerate probe optional packages with an import or find_spec: they must find them
    absent; so must the user's own find_spec probe."""
    library: dict = {}
    probe = "def probe():\n    import notinstalled_probe\n"
    exec(compile(probe, "/usr/lib/python3/site-packages/somelib/utils.py", "exec"), library)
    with pytest.raises(ImportError):
        library["probe"]()
    assert importlib.util.find_spec("notinstalled_probe2") is None
    assert finder.sites == {}


def test_opaque_values_stay_opaque_until_torch_sees_one(finder, tmp_path):
    user = tmp_path / "user_code.py"
    user.write_text("import notinstalled_lib as lib\nfrom notinstalled_lib.api import Client\n")
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("user_code")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("user_code", None)
    value = mod.Client(key="k").chat.completions.create(model="m")["choices"]
    assert list(value) == [] and "notinstalled_lib.api" in repr(value)
    with pytest.raises(opaque_modules.OpaqueValueUsed, match=r"from notinstalled_lib\.api"):
        torch.nn.functional.linear(value, torch.ones(2, 2))
    with pytest.raises(
        opaque_modules.OpaqueValueUsed,
        match=r"from notinstalled_lib\.load_config \(not installed.*read as a number",
    ):
        torch.manual_seed(mod.lib.load_config().seed)  # int(seed)
    assert set(finder.sites) == {"notinstalled_lib"}
    assert finder.sites["notinstalled_lib"] == (str(user), 1)
