"""Shadow checks a matrix product or a pointwise op too large to copy whole on a random block of its output
(shadow_blocks.py): the block replayed from the parts equals that block of the whole op; a fault on 1% of the
elements is found; the record names the whole inputs' shapes and the block; ``rows=0`` (every row) and other ops
over the limit (a reduction) are still skipped, and the report says so."""

import contextlib
import random

import pytest
import torch

from ascend_tools.precision import shadow
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.shadow_blocks import take_block, take_rows

ATEN = torch.ops.aten


def operands(seed=0):
    g = torch.Generator().manual_seed(seed)
    return lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    "name, make",
    [
        ("aten::mm", lambda r: (ATEN.mm.default, (r(70, 40), r(40, 50)))),
        ("aten::mm", lambda r: (ATEN.mm.default, (r(70, 40), r(50, 40).t()))),  # a weight's transpose
        ("aten::addmm", lambda r: (ATEN.addmm.default, (r(50), r(70, 40), r(40, 50)))),
        (
            "aten::addmm",
            lambda r: (ATEN.addmm.default, (r(70, 50), r(70, 40), r(40, 50)), {"beta": 0.5, "alpha": 2}),
        ),
        ("aten::addmm", lambda r: (ATEN.addmm.default, (r(1, 50), r(70, 40), r(40, 50)))),
        ("aten::addmm", lambda r: (ATEN.addmm.default, (r(70, 1), r(70, 40), r(40, 50)))),
        ("aten::addmm", lambda r: (ATEN.addmm.default, (r(()), r(70, 40), r(40, 50)))),
        ("aten::bmm", lambda r: (ATEN.bmm.default, (r(3, 70, 40), r(3, 40, 50)))),
        ("aten::baddbmm", lambda r: (ATEN.baddbmm.default, (r(3, 70, 50), r(3, 70, 40), r(3, 40, 50)))),
        ("aten::baddbmm", lambda r: (ATEN.baddbmm.default, (r(50), r(3, 70, 40), r(3, 40, 50)))),
    ],
)
def test_the_block_from_the_parts_is_that_block_of_the_whole_product(name, make):
    func, args, *rest = make(operands())
    kwargs = rest[0] if rest else {}
    block = take_block(name, args, kwargs, 16, random.Random(0))
    assert block is not None
    parts = tuple(block.parts[id(a)] if isinstance(a, torch.Tensor) else a for a in args)
    whole = func(*args, **kwargs)
    rows, cols = block.rows.tolist(), block.cols.tolist()
    assert len(rows) == len(cols) == 16 and rows == sorted(set(rows))
    expected = whole[..., rows, :][..., cols]
    torch.testing.assert_close(func(*parts, **kwargs), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(block.output(whole), expected)
    assert block.shapes == [list(a.shape) for a in args if isinstance(a, torch.Tensor)]


def test_no_more_rows_than_the_block_takes_them_all_and_what_it_cannot_cut_is_none():
    r = operands()
    a, b = r(10, 40), r(40, 50)
    block = take_block("aten::mm", (a, b), {}, 16, random.Random(0))
    assert block is not None and block.checked() == ([10, 10], [16, 50])
    assert block.parts[id(a)].data_ptr() != a.data_ptr()  # a copy, even where every row is taken
    s = r(40, 40)
    assert take_block("aten::mm", (s, s), {}, 16, random.Random(0)) is None  # mm(s, s): one operand twice
    assert take_block("aten::add", (a, a), {}, 16, random.Random(0)) is None
    assert take_block("aten::mm", (a, b), {"out": r(10, 50)}, 16, random.Random(0)) is None
    assert take_block("aten::addmm", (r(70, 3), r(70, 40), r(40, 50)), {}, 16, random.Random(0)) is None


def run(limit, rows=32, fault=None):
    g = torch.Generator().manual_seed(0)
    x, w, bias = (
        torch.randn(300, 200, generator=g),
        torch.randn(250, 200, generator=g),
        torch.randn(250, generator=g),
    )
    # the faulty kernel below the shadow, as a device's is
    with (
        FaultInjector(fault) if fault else contextlib.nullcontext(),
        shadow(max_numel=limit, rows=rows) as sh,
    ):
        torch.nn.functional.linear(x, w, bias)
        x.sum(dim=0)  # 60,000 elements, over a limit of 50,000: a reduction, no block to take
    return sh


def test_a_matrix_product_over_max_numel_is_checked_on_a_block_and_a_fault_on_1_percent_is_found():
    clean = run(50_000)
    (rec,) = [r for r in clean.results if r.name == "aten::addmm"]
    assert (rec.rows, rec.cols, rec.input_shapes) == ([32, 300], [32, 250], [[250], [300, 200], [200, 250]])
    assert rec.verdict.level == "pass"
    assert clean.skipped["max_numel"] == 1 and clean.largest_skipped == 60_000  # the sum
    summary = dict(clean.report().summary)
    assert summary["blocks"].startswith(
        "1 ops over --max-numel (matrix products, pointwise ops) checked on a random block of 32 x 32 of"
    )
    assert summary["too large"].startswith("1 op calls over --max-numel (50,000 elements) not checked")
    faulty = run(50_000, fault=Fault("aten::addmm", call=0, kind="perturb", fraction=0.01, scale=0.05))
    assert [r.key for r in faulty.culprits()] == ["aten::addmm#init#0"]
    every_row = run(50_000, rows=0)  # --rows 0: every row or nothing
    assert every_row.skipped["max_numel"] == 2 and not [
        r for r in every_row.results if r.name == "aten::addmm"
    ]


@pytest.mark.parametrize(
    "name, make",
    [
        ("aten::silu", lambda r: (ATEN.silu.default, (r(70, 40),))),
        (
            "aten::add.Tensor",
            lambda r: (ATEN.add.Tensor, (r(70, 40), r(40))),
        ),  # a bias broadcast over the rows
        ("aten::mul.Tensor", lambda r: (ATEN.mul.Tensor, (r(3, 70, 40), r(3, 1, 40)))),
        ("aten::lerp.Scalar", lambda r: (ATEN.lerp.Scalar, (r(70, 40), r(70, 40), 0.1))),
        # sequence-first [S, B, H] (Megatron's layout) with a batch under 16: the rows are taken along S
        ("aten::silu", lambda r: (ATEN.silu.default, (r(70, 4, 40),))),
        ("aten::add.Tensor", lambda r: (ATEN.add.Tensor, (r(70, 4, 40), r(70, 1, 40)))),
        ("aten::mul.Tensor", lambda r: (ATEN.mul.Tensor, (r(70, 4, 40), r(4, 40)))),
    ],
)
def test_a_pointwise_ops_rows_from_the_parts_are_those_rows_of_the_whole_op(name, make):
    func, args = make(operands())
    block = take_rows(name, args, {}, 16, random.Random(0))
    assert block is not None and block.cols is None
    parts = tuple(block.parts[id(a)] if isinstance(a, torch.Tensor) else a for a in args)
    whole = func(*args)
    rows = block.rows.tolist()
    assert len(rows) == 16 and block.checked() == ([16, 70], [40, 40])
    expected = whole.index_select(whole.dim() + block.dim, block.rows)
    assert expected.shape[block.dim] == 16 and whole.shape[block.dim] == 70
    assert torch.equal(func(*parts), expected)
    assert torch.equal(block.output(whole), expected)
    r = operands()
    assert (
        take_rows("aten::add.Tensor", (r(70, 40), r(3, 40)), {}, 16, random.Random(0)) is None
    )  # not broadcast


@pytest.mark.parametrize("op", ["aten::silu", "aten::lerp_.Scalar"])
@pytest.mark.parametrize("layout", ["batch-first", "sequence-first"])
def test_a_pointwise_op_over_max_numel_is_checked_on_rows_and_a_fault_on_1_percent_is_found(op, layout):
    g = torch.Generator().manual_seed(0)
    shape = (400, 300) if layout == "batch-first" else (400, 2, 150)  # [S, B, H] with a batch of 2
    x, w, m = torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.zeros(shape)
    for fault in (None, Fault(op, call=0, kind="perturb", fraction=0.01, scale=0.05)):
        with FaultInjector(fault) if fault else contextlib.nullcontext(), shadow(max_numel=50_000) as sh:
            torch.nn.functional.silu(x)
            m.lerp_(w, 0.1)  # an optimizer's update of a large weight, in place
        assert [(r.name, r.rows, r.cols) for r in sh.results] == [
            ("aten::silu", [32, 400], [shape[-1], shape[-1]]),
            ("aten::lerp_.Scalar", [32, 400], [shape[-1], shape[-1]]),
        ]
        assert [r.name for r in sh.culprits()] == ([op] if fault else [])
