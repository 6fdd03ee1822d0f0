"""tools/gen_npu_op_table.py: reproduces the shipped table byte-for-byte and matches the 2.14 wheel."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "gen_npu_op_table.py")
SHIPPED = os.path.join(REPO, "ascend_tools", "opcheck", "data", "npu_ops.json")
DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "torch_npu")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(DATA), reason=f"{DATA} absent: CI keeps ../shared beside the clone"
)


def _gen():
    spec = importlib.util.spec_from_file_location("gen_npu_op_table", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_regenerates_shipped_table_byte_for_byte(tmp_path):
    out = tmp_path / "npu_ops.json"
    r = subprocess.run([sys.executable, TOOL, "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(SHIPPED, "rb") as f:
        assert out.read_bytes() == f.read(), "shipped table is stale: run python tools/gen_npu_op_table.py"


def test_check_mode_passes_on_shipped_and_fails_on_stale(tmp_path):
    r = subprocess.run([sys.executable, TOOL, "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    stale = tmp_path / "npu_ops.json"
    stale.write_text("{}\n")
    r = subprocess.run([sys.executable, TOOL, "--check", "--out", str(stale)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "stale" in r.stderr


def test_2_14_matches_wheel_up_to_documented_differences():
    gen = _gen()
    table = gen.build(gen.DEFAULT_OP_PLUGIN, gen.DEFAULT_WHEEL, gen.DEFAULT_SKIPLIST)
    wheel = gen.parse_wheel(gen._load(gen.DEFAULT_WHEEL))
    ops = table["ops"]

    def in_214(row, kind):
        return any(_within("2.14", r) for r in row.get(kind, ()))

    resolved = {n for n, row in ops.items() if any(in_214(row, k) for k in ("v", "sparse", "quant"))}
    assert resolved == set(wheel)
    cc = table["cross_check_2.14"]
    assert cc["table_ops"] == cc["wheel_ops"] == len(wheel)
    assert gen.unexplained(table) == []
    # documented categories are what they say
    assert "view" in cc["core_assumed_all_versions"] and "_to_copy" in cc["core_assumed_all_versions"]
    for name in cc["op_plugin_not_in_wheel"]:
        assert name not in wheel and not in_214(ops[name], "v")
    for name in cc["wheel_not_in_op_plugin_snapshot"]:
        assert ops[name]["src"] == "wheel_2.14"


def _within(v, r):
    key = lambda s: tuple(int(x) for x in s.split("."))  # noqa: E731
    lo, _, hi = r.partition("-")
    return key(lo) <= key(v) <= key(hi or lo)


def test_gate_forms():
    gen = _gen()
    vs = ["2.1", "2.2", "2.3", "2.4"]
    assert gen.expand_gate("all_version", vs) == set(vs)
    assert gen.expand_gate(["v2.2", "newest"], vs) == {"2.2", "2.3", "2.4"}
    assert gen.expand_gate(["v2.1", "v2.2"], vs) == {"2.1", "2.2"}
    assert gen.expand_gate("v2.1, v2.3", vs) == {"2.1", "2.3"}
    assert gen.compress({"2.1", "2.2", "2.4"}, vs) == ["2.1-2.2", "2.4"]
    with pytest.raises(gen.GenError):
        gen.expand_gate(["v2.1", "v9.9"], vs)
