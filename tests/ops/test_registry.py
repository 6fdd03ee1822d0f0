"""The tier registry: a wrong tier is refused by the self-check (one log line, the reference runs), a
raising tier is refused, ASCEND_TOOLS_KERNEL_<OP> forces, a correct extra tier is used and reported."""

import logging

import pytest
import torch

from ascend_tools.ops import registry
from ascend_tools.ops import rms_norm as R

OP = "rms_norm"


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts from rms_norm's own tiers with no cached checks, and leaves them so."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("ASCEND_TOOLS_KERNEL_RMS_NORM", raising=False)
    saved = dict(registry._STATE.tiers[OP])
    registry._STATE.checks.clear()
    yield
    registry._STATE.tiers[OP] = saved
    registry._STATE.checks.clear()


def extra_tier(forward, name="ascendc"):
    """A tier that is available on the CPU, preferred over everything (ascendc comes first)."""
    return registry.Tier(
        OP,
        name,
        forward=forward,
        available=lambda device: True,
        check_inputs=R.check_inputs,
        tolerance=R.tolerance,
    )


def counting(fn):
    def wrapper(*args, **kwargs):
        wrapper.calls += 1
        return fn(*args, **kwargs)

    wrapper.calls = 0
    return wrapper


def forgets_eps(x, weight, eps=1e-6, offset=0.0, casting="llama"):
    return R.rms_norm_reference(x, weight, 0.0, offset, casting)


def scales_by_1_01(x, weight, eps=1e-6, offset=0.0, casting="llama"):
    return R.rms_norm_reference(x, weight, eps, offset, casting) * 1.01


def warnings_of(caplog):
    return [r for r in caplog.records if r.name == "ascend_tools" and r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    "wrong,eps,dtype",
    [
        (forgets_eps, 1e-2, torch.float32),
        (scales_by_1_01, 1e-6, torch.float32),
        (scales_by_1_01, 1e-6, torch.float16),
    ],
)
def test_wrong_tier_is_refused_once_and_the_reference_runs(caplog, wrong, eps, dtype):
    wrong = counting(wrong)
    registry.register(extra_tier(wrong))
    x, w = torch.randn(4, 3, 64).to(dtype), (1 + 0.1 * torch.randn(64)).to(dtype)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        outs = [R.rms_norm(x, w, eps=eps) for _ in range(5)]
    assert all(torch.equal(o, R.rms_norm_reference(x, w, eps)) for o in outs)
    assert wrong.calls == 1  # only inside the self-check
    lines = warnings_of(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "rms_norm tier 'ascendc' refused" in lines[0].getMessage()
    assert registry.select(OP, (x, w), {}).name == "reference"
    (check,) = [c for c in registry.status() if c.tier == "ascendc"]
    assert not check.ok and check.max_err_forward > sum(R.tolerance(dtype))


def test_raising_tier_is_refused(caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("aclnnRmsNorm failed: EZ1001\nsecond line")

    registry.register(extra_tier(boom))
    x, w = torch.randn(2, 32), torch.ones(32)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        assert torch.equal(R.rms_norm(x, w), R.rms_norm_reference(x, w))
        R.rms_norm(x, w)
    (line,) = warnings_of(caplog)
    assert "raised RuntimeError: aclnnRmsNorm failed: EZ1001" in line.getMessage()
    assert "second line" not in line.getMessage()


def test_correct_extra_tier_passes_is_used_and_reported(caplog):
    def fp64_then_cast(x, weight, eps=1e-6, offset=0.0, casting="llama"):
        return R.rms_norm_reference(x.double(), weight.double(), eps, offset, casting).to(x.dtype)

    good = counting(fp64_then_cast)
    registry.register(extra_tier(good))
    x, w = torch.randn(3, 48), torch.randn(48)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        for _ in range(3):
            R.rms_norm(x, w)
    assert not warnings_of(caplog)
    assert good.calls == 1 + 3  # the self-check, then every call
    (check,) = registry.status()
    assert (check.op, check.tier, check.device, check.dtype, check.ok) == (
        OP,
        "ascendc",
        "cpu",
        "float32",
        True,
    )
    assert check.max_err_forward <= 1e-6


def test_env_forces_the_reference(monkeypatch):
    good = counting(R.rms_norm_reference)
    registry.register(extra_tier(good))
    monkeypatch.setenv("ASCEND_TOOLS_KERNEL_RMS_NORM", "reference")
    x, w = torch.randn(2, 16), torch.ones(16)
    assert registry.select(OP, (x, w), {}).name == "reference"
    R.rms_norm(x, w)
    assert good.calls == 0 and registry.status() == []


def test_env_forces_a_tier_still_self_checked(monkeypatch, caplog):
    registry.register(extra_tier(R.rms_norm_reference, name="triton"))
    registry.register(extra_tier(scales_by_1_01, name="ascendc"))
    x, w = torch.randn(2, 16), torch.ones(16)
    assert registry.select(OP, (x, w), {}).name == "triton"  # ascendc refused, triton next
    registry._STATE.checks.clear()
    caplog.clear()
    monkeypatch.setenv("ASCEND_TOOLS_KERNEL_RMS_NORM", "triton")
    assert registry.select(OP, (x, w), {}).name == "triton"
    monkeypatch.setenv("ASCEND_TOOLS_KERNEL_RMS_NORM", "ascendc")
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        assert registry.select(OP, (x, w), {}).name == "reference"
    assert len(warnings_of(caplog)) == 1


def test_self_check_under_no_grad_and_inference_mode():
    registry.register(extra_tier(R.rms_norm_reference))
    x, w = torch.randn(2, 16), torch.ones(16)
    with torch.no_grad():
        assert registry.select(OP, (x, w), {}).name == "ascendc"
    registry._STATE.checks.clear()
    with torch.inference_mode():
        xi = torch.randn(2, 16)
        assert registry.select(OP, (xi, torch.ones(16)), {}).name == "ascendc"
        assert R.rms_norm(xi, torch.ones(16)).shape == (2, 16)


def test_self_check_leaves_the_global_rng_alone():
    registry.register(extra_tier(R.rms_norm_reference))
    x, w = torch.randn(2, 16), torch.ones(16)
    state = torch.random.get_rng_state()
    R.rms_norm(x, w)
    assert torch.equal(state, torch.random.get_rng_state())


def test_unavailable_tiers_say_why():
    reasons = {
        name: registry.why_unavailable(tier, torch.device("cpu")) for name, tier in registry.tiers(OP).items()
    }
    assert reasons["reference"] is None
    assert "NPU" in reasons["npu"] and "NPU" in reasons["ascendc"]
    assert reasons["triton"]  # no TRITON_INTERPRET here


def test_max_rel_error():
    b = torch.tensor([1.0, -1.0, 0.0])  # rms < 1: |a-b| / (1 + |b|)
    assert registry.max_rel_error(b, b) == 0.0
    assert registry.max_rel_error(b + 0.01, b) == pytest.approx(0.01)
    assert registry.max_rel_error(torch.tensor([float("nan")]), torch.tensor([1.0])) == float("inf")
    assert registry.max_rel_error(torch.tensor([float("inf")]), torch.tensor([float("inf")])) == 0.0
    big = torch.full((4,), 100.0)
    big[0] = 0.1  # a small element among large ones: judged against the tensor's scale
    assert registry.max_rel_error(big + 0.5, big) < 0.01


# --- ascend-doctor selfcheck ---------------------------------------------------------------------------------


def run_selfcheck(monkeypatch, *args):
    import json

    from click.testing import CliRunner

    from ascend_tools.cli import main
    from ascend_tools.ops import selfcheck

    monkeypatch.setattr(selfcheck, "OP_MODULES", ("rms_norm",))  # the other ops test their own tiers
    result = CliRunner().invoke(main, ["selfcheck", "--format", "json", *args])
    return result.exit_code, json.loads(result.output) if result.output.strip() else None


def test_selfcheck_cli_passes_with_the_real_tiers(monkeypatch):
    code, doc = run_selfcheck(monkeypatch)
    assert code == 0 and doc["schema"] == "ascend-doctor/selfcheck/1" and doc["failed"] == 0
    assert doc["golden_cases"] == {"rms_norm": 4}
    assert doc["golden_dir"] == str(registry.golden_dir()) and doc["golden_dir"].endswith("ops/golden")
    ref = [r for r in doc["results"] if r["tier"] == "reference"]
    assert {r["dtype"] for r in ref} == {"float32", "float16", "bfloat16"}
    assert all(r["verdict"] == "ok" and r["cases"] == 4 for r in ref)
    assert {(u["tier"], u["op"]) for u in doc["unavailable"]} >= {
        ("npu", "rms_norm"),
        ("ascendc", "rms_norm"),
    }


def test_selfcheck_cli_fails_without_golden_vectors(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "golden_dir", lambda: tmp_path)
    code, doc = run_selfcheck(monkeypatch)
    assert code == 1 and doc["golden_cases"] == {"rms_norm": 0}
    assert doc["results"] and all(r["verdict"] == "fail" and r["cases"] == 0 for r in doc["results"])
    assert doc["results"][0]["failures"] == [
        f"no golden vectors for rms_norm in {tmp_path}: this copy of ascend_tools is incomplete"
    ]


def test_selfcheck_cli_fails_on_a_wrong_tier(monkeypatch):
    registry.register(extra_tier(scales_by_1_01))
    code, doc = run_selfcheck(monkeypatch)
    assert code == 1
    bad = [r for r in doc["results"] if r["verdict"] == "fail"]
    assert {r["tier"] for r in bad} == {"ascendc"} and {r["dtype"] for r in bad} == {"float32", "float16"}
