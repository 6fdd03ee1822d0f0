"""Shadow's row sampling (shadow_rows.py): the replay of the picked rows is exactly those rows of the full float64
replay, broadcast operands stay whole, what cannot be cut is checked whole, and faults are still found."""

import json
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from ascend_tools.precision import shadow
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.shadow_rows import pick_rows, row_wise, stratified

aten = torch.ops.aten
F64 = torch.float64


def _cut_replay(func, name, args, rows=8):
    """The op replayed in float64 on the picked rows, and the same rows of the full float64 run."""
    shapes = {id(a): a.shape for a in args if isinstance(a, torch.Tensor)}
    full = func(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
    pick = pick_rows(name, tuple(args), {}, shapes, [full.shape], rows, np.random.default_rng(1))
    assert pick is not None and len(pick.rows) == rows and pick.total == full.shape[-2]
    cut = [
        (pick.take(a) if id(a) in pick.cut else a).double() if isinstance(a, torch.Tensor) else a
        for a in args
    ]
    return func(*cut), pick.take(full), pick


CASES = {
    "mm": (aten.mm.default, "aten::mm", lambda: [torch.randn(40, 16), torch.randn(16, 24)]),
    "addmm, bias with rows": (
        aten.addmm.default,
        "aten::addmm",
        lambda: [torch.randn(40, 24), torch.randn(40, 16), torch.randn(16, 24)],
    ),
    "addmm, bias broadcast": (
        aten.addmm.default,
        "aten::addmm",
        lambda: [torch.randn(24), torch.randn(40, 16), torch.randn(16, 24)],
    ),
    "bmm": (aten.bmm.default, "aten::bmm", lambda: [torch.randn(3, 40, 16), torch.randn(3, 16, 24)]),
    "baddbmm, bias broadcast over batches": (
        aten.baddbmm.default,
        "aten::baddbmm",
        lambda: [torch.randn(40, 24), torch.randn(3, 40, 16), torch.randn(3, 16, 24)],
    ),
    "pointwise, broadcast inputs": (
        aten.addcmul.default,
        "aten::addcmul",
        lambda: [torch.randn(2, 40, 24), torch.randn(24), torch.randn(40, 1)],
    ),
    "pointwise, one row broadcast": (
        aten.mul.Tensor,
        "aten::mul.Tensor",
        lambda: [torch.randn(40, 24), torch.randn(1, 24)],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_picked_rows_replay_to_exactly_those_rows_of_the_full_replay(case):
    func, name, make = CASES[case]
    torch.manual_seed(0)
    args = make()
    assert row_wise(name, func)
    part, expect, pick = _cut_replay(func, name, args)
    assert part.dtype == F64 and torch.equal(part, expect)
    assert torch.equal(pick.rows, pick.rows.unique())  # distinct, sorted


def test_what_cannot_be_cut_is_checked_whole():
    rng = np.random.default_rng(0)
    a, b = torch.randn(40, 40), torch.randn(40, 16)

    def pick(name, args, out_shape, rows=8):
        shapes = {id(x): x.shape for x in args if isinstance(x, torch.Tensor)}
        return pick_rows(name, tuple(args), {}, shapes, [out_shape], rows, rng)

    assert pick("aten::mm", [a, b], (40, 16), rows=0) is None  # rows=0: every row
    assert pick("aten::mm", [a, b], (40, 16), rows=40) is None  # no more rows than asked for
    assert pick("aten::mm", [a, a], (40, 40)) is None  # mm(a, a): the whole operand is a too
    # an input neither with the output's rows nor broadcast over them
    assert pick("aten::add.Tensor", [torch.randn(40, 16), torch.randn(5, 16)], (40, 16)) is None
    assert pick("aten::add.Tensor", [torch.randn(40)], (40,)) is None  # one dim: no rows
    assert pick("aten::cat", [[a, a]], (80, 40)) is None  # tensors in a list
    out = torch.empty(40, 16)
    shapes = {id(b): b.shape, id(out): out.shape}
    assert pick_rows("aten::add.out", (b, b), {"out": out}, shapes, [b.shape], 8, rng) is None  # out=: whole
    # a row of softmax's output reads the whole row: not pointwise
    assert not row_wise("aten::_softmax", aten._softmax.default)
    assert not row_wise("aten::sum.dim_IntList", aten.sum.dim_IntList)


def test_a_faulty_matmul_is_still_named_on_its_rows_and_the_record_says_how_many():
    torch.manual_seed(0)
    model, x = torch.nn.Linear(32, 96, bias=False), torch.randn(64, 32)
    fault = Fault("aten::mm", call=0, kind="perturb", scale=0.5, fraction=0.1)
    with FaultInjector(fault), shadow(rows=8) as sh:
        model(x).square().mean().backward()
    (first,) = [r for r in sh.results if r.name == "aten::mm" and r.phase == "forward"]
    assert first.level == "error" and first.rows == [8, 64]
    assert sh.first_culprit() is first
    assert [r.key for r in sh.culprits()] == ["aten::mm#forward#0"]
    summary = dict(sh.report().summary)
    assert summary["rows"].startswith(f"{sum(1 for r in sh.results if r.rows)} ops checked on 8 random rows")


@pytest.mark.parametrize("total, rows", [(64, 8), (70, 8), (2048, 32), (33, 32)])
def test_the_draw_is_one_row_in_each_run_and_reaches_every_row(total, rows):
    """Run k is rows [floor(k total / rows), floor((k + 1) total / rows)); each of its n rows is drawn 1 / n of the
    time (within 5 standard deviations of the binomial count)."""
    runs = [range(k * total // rows, (k + 1) * total // rows) for k in range(rows)]
    gen = np.random.default_rng(0)
    counts: Counter = Counter()
    draws = 400 * total // rows
    for _ in range(draws):
        picked = stratified(total, rows, gen).tolist()
        assert [r in run for r, run in zip(picked, runs)] == [True] * rows
        counts.update(picked)
    for run in runs:
        p = 1 / len(run)
        for r in run:
            assert abs(counts[r] - draws * p) <= 5 * (draws * p * (1 - p)) ** 0.5 + 1, (
                r,
                counts[r],
                draws,
                p,
            )


def test_a_fault_on_the_last_tiles_rows_is_found_by_every_call():
    """A kernel wrong on its last tile (rows 48-63 of 64, a quarter of them) is in the rows checked each time; a
    uniform draw of 8 rows misses it with probability (3/4)^8 = 10% a call."""

    class LastTile(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is aten.mm.default and out.shape[0] == 64:
                out[48:] *= 1.01
            return out

    torch.manual_seed(0)
    model, x = torch.nn.Linear(32, 96, bias=False), torch.randn(64, 32)
    with LastTile(), shadow(rows=8) as sh:
        for _ in range(40):
            model(x)
    levels = [r.level for r in sh.results if r.name == "aten::mm"]
    assert len(levels) == 40 and set(levels) == {"error"}


def test_every_row_is_checked_with_rows_0_and_a_one_row_fault_is_found_then():
    class OneRow(torch.utils._python_dispatch.TorchDispatchMode):
        """A kernel wrong on one row of its output: a bad tiling edge."""

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is aten.mm.default and out.shape[0] == 64:
                out[37] *= 1.5
            return out

    torch.manual_seed(0)
    model, x = torch.nn.Linear(32, 96, bias=False), torch.randn(64, 32)
    with OneRow(), shadow(rows=0) as sh:
        model(x).sum()
    (rec,) = [r for r in sh.results if r.name == "aten::mm"]
    assert rec.level == "error" and rec.rows is None


def test_an_out_variant_is_checked_whole():
    a, b, out = torch.randn(64, 16), torch.randn(64, 16), torch.empty(64, 16)
    with shadow(rows=8) as sh:
        torch.add(a, b, out=out)
    (rec,) = sh.results
    assert rec.name == "aten::add.out" and rec.level == "pass" and rec.rows is None
    assert torch.equal(out, a + b)


def test_the_draws_leave_the_users_random_state_alone():
    torch.manual_seed(123)
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    with shadow(rows=8) as sh:
        a @ b
    got = torch.rand(3)
    torch.manual_seed(123)
    torch.randn(64, 32), torch.randn(32, 16)
    assert sh.results[0].rows == [8, 64] and torch.equal(got, torch.rand(3))


def test_rows_must_not_be_negative():
    with pytest.raises(ValueError, match="rows must be >= 0"):
        shadow(rows=-1)


def test_the_cli_passes_rows_on_and_the_records_say_what_was_checked(tmp_path, run_verb):
    def rows_of(*rows):
        out = tmp_path / f"report{'_'.join(rows)}.json"
        proc = run_verb(
            "shadow", *rows, "-f", "json", "-o", out, "--steps", "0", "--", sys.executable, "SCRIPT"
        )
        assert proc.returncode == 0, proc.stderr
        return {r["name"]: tuple(r["rows"] or ()) for r in json.loads(out.read_text())["records"]}

    # the script's batch is 4 rows, its first layer has 16 outputs (its weight's gradient: 16 rows)
    sampled = rows_of("--rows", "2")
    assert sampled["aten::addmm#forward#0"] == (2, 4)
    assert {(2, 4), (2, 16)} <= set(sampled.values()) <= {(), (2, 4), (2, 8), (2, 16)}
    assert set(rows_of("--rows", "0").values()) == {()}
    assert set(rows_of().values()) == {()}  # the default, 32: more rows than any op of the script has
    proc = run_verb("shadow", "--rows", "-1", "--", sys.executable, "SCRIPT")
    assert (
        proc.returncode == 2 and "Invalid value for '--rows'" in proc.stderr.splitlines()[-1]
    )  # click's usage error
