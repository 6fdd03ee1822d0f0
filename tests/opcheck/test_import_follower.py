"""Import following of the static scan: namespace packages, sys.path layouts, the working directory,
package-relative imports, failure propagation to importers, bounds; static path evaluation."""

import ast
import os
import textwrap

import pytest

from ascend_tools.opcheck import source_scan
from ascend_tools.opcheck.import_follower import static_path
from ascend_tools.opcheck.source_scan import scan_command, scan_target


def write(root, rel, text=""):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def at(findings):
    return {(f.file, f.line, f.rule, f.severity) for f in findings}


def test_namespace_packages_from_the_working_directory_and_propagation(tmp_path):
    # FastChat's layout: `python fastchat/train/train_mem.py` from the repo root, fastchat/train has no
    # __init__.py, and train_mem imports a flash-attn monkey patch then calls it
    write(tmp_path, "fastchat/__init__.py")
    write(
        tmp_path,
        "fastchat/train/train_mem.py",
        """\
        from fastchat.train.llama2_flash_attn_monkey_patch import (
            replace_llama_attn_with_flash_attn,
        )

        replace_llama_attn_with_flash_attn()
        """,
    )
    write(
        tmp_path,
        "fastchat/train/llama2_flash_attn_monkey_patch.py",
        """\
        import torch
        from flash_attn import __version__ as flash_attn_version

        def replace_llama_attn_with_flash_attn():
            torch.cuda.synchronize()
        """,
    )
    found = at(scan_command("fastchat/train/train_mem.py", [], str(tmp_path)))
    patch = os.path.join("fastchat", "train", "llama2_flash_attn_monkey_patch.py")
    main = os.path.join("fastchat", "train", "train_mem.py")
    assert found == {
        (patch, 2, "lib-flash-attn", "error"),
        (patch, 5, "cuda-call", "info"),
        (main, 1, "lib-flash-attn", "error"),  # the import fails on NPU
        (main, 5, "lib-flash-attn", "error"),  # and the patch call must go
    }


def test_ported_module_is_reported_where_it_needs_work_not_at_importers(tmp_path):
    write(tmp_path, "model.py", "import torch\ntorch.cuda.synchronize()\nimport xformers.ops as xops\n")
    write(tmp_path, "ok.py", "try:\n    import xformers.ops as xops\nexcept ImportError:\n    xops = None\n")
    main = write(tmp_path, "train.py", "import model\nfrom ok import xops\n")
    found = at(scan_target(main))
    assert (main, 1, "lib-xformers", "error") in found  # model.py's unguarded import fails at import
    assert not {f for f in found if f[0] == main and f[1] == 2}  # guarded: a real fallback


@pytest.mark.parametrize(
    "path_expr",
    [
        'os.path.join(os.path.dirname(__file__), "..")',
        "os.path.dirname(os.path.dirname(os.path.abspath(__file__)))",
        "str(Path(__file__).resolve().parents[1])",
        "str(Path(__file__).parent.parent)",
        "ROOT",
    ],
)
def test_sys_path_layouts(tmp_path, path_expr):
    write(tmp_path, "lib/model.py", "import xformers.ops\n")
    script = write(
        tmp_path,
        "scripts/train.py",
        f"""\
        import os
        import sys
        from pathlib import Path
        ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
        sys.path.insert(0, {path_expr})
        from lib.model import Net
        """,
    )
    found = at(scan_target(script, cwd=str(tmp_path / "scripts")))
    model = os.path.normpath(os.path.join(os.path.dirname(script), "..", "lib", "model.py"))
    assert (model, 1, "lib-xformers", "error") in found


def test_unresolvable_sys_path_and_relative_imports(tmp_path):
    write(tmp_path, "pkg/__init__.py")
    write(tmp_path, "pkg/kernels.py", "import torch\ntorch.cuda.synchronize()\n")
    main = write(
        tmp_path,
        "pkg/train.py",
        "import sys\nsys.path.append(args.root)\nfrom .kernels import k\nfrom . import kernels\n",
    )
    found = at(scan_target(main))
    assert found == {(os.path.join(os.path.dirname(main), "kernels.py"), 2, "cuda-call", "info")}


def test_bounded_file_count(tmp_path, monkeypatch):
    for i in range(5):
        write(tmp_path, f"m{i}.py", f"import m{i + 1}\nimport torch\ntorch.cuda.synchronize()\n")
    monkeypatch.setattr(source_scan, "MAX_FILES", 3)
    files = {f.file for f in scan_target(str(tmp_path / "m0.py"))}
    assert len(files) == 3


def _eval(expr, file="/repo/src/train.py", env=None):
    env = {k: ast.parse(v, mode="eval").body for k, v in (env or {}).items()}
    aliases = {"os": "os", "Path": "pathlib.Path", "str": "str"}

    def resolve(node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in aliases:
            return ".".join([aliases[node.id], *parts[::-1]])
        return None

    return static_path(
        ast.parse(expr, mode="eval").body, file, resolve, lambda n: env.get(getattr(n, "id", ""), n)
    )


def test_static_path_expressions():
    assert _eval("os.path.dirname(__file__)") == "/repo/src"
    assert _eval('os.path.join(os.path.dirname(__file__), "..", "lib")') == "/repo/src/../lib"
    assert _eval("Path(__file__).parent.parent") == "/repo"
    assert _eval("Path(__file__).resolve().parents[1]") == "/repo"
    assert _eval('Path(__file__).parent / "third_party"') == "/repo/src/third_party"
    assert _eval("str(HERE)", env={"HERE": "os.path.dirname(__file__)"}) == "/repo/src"
    assert _eval('"../megatron"') == "../megatron"
    for dynamic in (
        "args.root",
        "os.environ['ROOT']",
        "os.getcwd()",
        "f'{x}/y'",
        "Path(__file__).parents[i]",
    ):
        assert _eval(dynamic) is None


def test_imports_inside_functions_follow_calls(tmp_path):
    # FastChat llama2_flash_attn_monkey_patch.py: test() imports the v1 patch and runs only under __main__
    write(tmp_path, "v1_patch.py", "from flash_attn.flash_attn_interface import flash_attn_unpadded_func\n")
    write(tmp_path, "v2_patch.py", "import torch\n")
    write(tmp_path, "used.py", "import xformers.ops\n")
    write(tmp_path, "late.py", "import apex\n")
    write(
        tmp_path,
        "patch.py",
        """\
        def test():
            from v1_patch import flash_attn_unpadded_func
        def helper():
            import used
        def run():
            import late
        if __name__ == "__main__":
            test()
        """,
    )
    main = write(
        tmp_path,
        "train.py",
        """\
        import patch
        def main():
            import v2_patch
        patch.helper()
        if __name__ == "__main__":
            patch.run()
        """,
    )
    files = {os.path.basename(f.file) for f in scan_target(main)}
    assert {"used.py", "late.py"} <= files  # helper() and run() are called from train.py
    assert "v1_patch.py" not in files  # test() only runs as patch.py's own __main__
