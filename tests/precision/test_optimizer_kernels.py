"""The same optimizer update by other kernels: torch steps ``AdamW`` with ``_foreach_*`` ops on CUDA and NPU, one
``_fused_adamw_`` with ``fused=True``, and ops per parameter on the CPU, where the script does not say. A GPU or NPU
run compared with a CPU reference must not list the optimizer's unpaired ops as causes (before: 30 target-only
suspects in a clean compare), must say why they are not paired, and must still show a real difference of the
update in the next step's parameters."""

import pytest
import torch
from tiny_llama import build

from ascend_tools.precision import capture
from ascend_tools.precision.causes import optimizer_kernels
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.records import Record

KERNELS = {"single": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


def _dump(path, kernel, eps=1e-8, clip=False):
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=eps, **KERNELS[kernel])
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(2))
    with capture(str(path), level="op", mode="tensor"):
        for _ in range(2):
            model(input_ids=ids, labels=ids).loss.backward()
            if (
                clip
            ):  # phase optimizer too; torch picks its kernels (_foreach_norm on the CPU) whatever AdamW's
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1e3)
            opt.step()
            opt.zero_grad()
    return str(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _dump(tmp_path_factory.mktemp("single") / "d", "single")


@pytest.mark.parametrize("kernel", ["foreach", "fused"])
def test_a_clean_run_with_another_optimizer_kernel_lists_nothing(reference, kernel, tmp_path):
    target = _dump(tmp_path / kernel, kernel)
    for step in (0, 1):
        data = compare_dumps(target, reference, step=step).data
        assert data["culprits"] == [], (step, data["culprits"][:3])
        assert data["summary"]["optimizer_kernels"] == [kernel, "single"]
    rep = compare_dumps(target, reference, step=0)
    assert any(f.rule == "optimizer-kernels-differ" for s in rep.sections for f in s.findings)


def test_clipping_before_the_step_does_not_hide_the_optimizers_kernel(tmp_path):
    reference = _dump(tmp_path / "single", "single", clip=True)
    target = _dump(tmp_path / "foreach", "foreach", clip=True)
    data = compare_dumps(target, reference, step=1).data
    assert data["summary"]["optimizer_kernels"] == ["foreach", "single"]
    assert data["culprits"] == [], data["culprits"][:3]


def test_one_kernel_on_both_sides_is_no_note(reference, tmp_path):
    data = compare_dumps(_dump(tmp_path / "again", "single"), reference, step=0).data
    assert data["summary"]["optimizer_kernels"] is None and data["culprits"] == []


def test_an_update_that_differs_shows_in_the_next_steps_parameters(reference, tmp_path):
    """AdamW's eps 1e-2 on the foreach side: its ops are not paired with the reference's, and the parameters it
    wrote are off the reference's when step 1 reads them."""
    target = _dump(tmp_path / "eps", "foreach", eps=1e-2)
    cause = compare_dumps(target, reference, step=1).data["summary"]["cause"]
    assert "parameters differ from the reference's" in cause


def _op(name, phase="optimizer"):
    return Record(id=0, name=name, kind="op", phase=phase, call=0)


def test_optimizer_kernels_reads_the_optimizer_phase_only():
    assert optimizer_kernels([_op("aten::mul_.Tensor"), _op("aten::addcdiv_")]) == "single"
    assert optimizer_kernels([_op("aten::mul_.Tensor"), _op("aten::_foreach_mul_.Scalar")]) == "foreach"
    # clipping's foreach ops, then a single-tensor update (and a read of a step count after it)
    clipped = [
        "aten::_foreach_norm.Scalar",
        "aten::_foreach_mul_.Tensor",
        "aten::add_.Tensor",
        "aten::_local_scalar_dense",
    ]
    assert optimizer_kernels([_op(n) for n in clipped]) == "single"
    assert optimizer_kernels([_op("aten::_foreach_add_.Scalar"), _op("aten::_fused_adamw_")]) == "fused"
    assert optimizer_kernels([_op("aten::_foreach_add_.List", phase="backward")]) == ""
