"""bench/gpu_patch_check.py, the script run on a lent GPU, checked here on the CPU: the dry run end to end
against plain PyTorch (HF's math), a tier off by 1% failing its self-check, a failing peer reported
without ending the run, and the Triton variants under the interpreter."""

import importlib.util
import json
import os
import types

import pytest
import torch
import torch.nn.functional as F

from ascend_tools.ops import registry
from ascend_tools.ops import swiglu as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "gpu_patch_check", os.path.join(ROOT, "bench", "gpu_patch_check.py")
)
assert _spec is not None and _spec.loader is not None
G = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(G)
CPU = torch.device("cpu")


def test_dry_run_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert G.main(["--dry-run", "--repeat", "2", "--warmup", "1"]) == 0
    data = json.loads((tmp_path / "gpu_patch_check.json").read_text())
    checks = data["selfcheck"]
    assert {r["op"] for r in checks} == {"rms_norm", "rope", "attention", "swiglu", "linear_cross_entropy"}
    assert all(r["verdict"] == "pass" and r["max_err_forward"] <= r["tolerance"] for r in checks)
    rows = {(r["op"], r["variant"]): r for r in data["timing"]}
    assert set(rows) == {(op, v) for op in G.SHAPES["dry"] for v in ("torch", "reference")}
    # the reference tier against plain PyTorch with HF's math, fp32: output and every input gradient
    assert all(r["err"] <= 1e-5 and r["ms"] > 0 and r["peak_mb"] is None for r in rows.values())
    out = capsys.readouterr().out
    assert "| linear_cross_entropy | N 40, H 16, V 100 | reference |" in out


def test_a_tier_off_by_one_percent_fails_its_self_check():
    real = registry.tiers("swiglu")["triton"]
    off = registry.Tier(
        "swiglu", "triton", forward=lambda g, u: S.swiglu_reference(g, u) * 1.01, tolerance=S.tolerance
    )
    registry.register(off)
    try:
        rows = G.selfcheck(CPU, [torch.float32, torch.bfloat16], ("triton",))
    finally:
        registry.register(real)
    swiglu = [r for r in rows if r["op"] == "swiglu"]
    assert [r["verdict"] for r in swiglu] == ["fail", "fail"]
    assert [r for r in rows if r["op"] == "attention"] == [
        {"op": "attention", "tier": "-", "verdict": "none", "reason": "no triton tier"}
    ]


def test_a_failing_peer_is_a_row_not_the_end_of_the_run():
    def broken(*args, **kwargs):
        raise RuntimeError("peer kernel failed")

    liger = {
        "rms_norm": broken,
        "rope": broken,
        "swiglu": types.SimpleNamespace(apply=lambda g, u: F.silu(g) * u),  # a correct stand-in
        "linear_cross_entropy": lambda: broken,
    }
    shapes = {op: G.SHAPES["dry"][op] for op in ("swiglu", "linear_cross_entropy")}
    rows = G.timing(CPU, torch.float32, shapes, liger, ("torch",), warmup=0, repeat=1)
    got = {(r["op"], r["variant"]): r for r in rows}
    assert got[("swiglu", "liger")]["err"] == 0.0
    assert got[("linear_cross_entropy", "liger")]["error"] == "RuntimeError: peer kernel failed"
    assert got[("linear_cross_entropy", "torch")]["err"] == 0.0


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_variants_interpreted(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    rows = G.timing(CPU, torch.float32, G.SHAPES["dry"], None, ("torch", "triton"), warmup=0, repeat=1)
    triton_rows = [r for r in rows if r["variant"] == "triton"]
    assert len(triton_rows) == 4 and all(r["err"] <= 1e-5 for r in triton_rows), triton_rows
