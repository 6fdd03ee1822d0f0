"""Integer inputs the two runs were given differently (data_inputs.py): only a leaf (no earlier op produced it)
is the data; an integer an earlier op produced and that differs follows from that op."""

import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.data_inputs import (
    differing_fraction,
    leaf_inputs,
    stats_differ,
    unread_random_fills,
)
from ascend_tools.precision.records import Record, TensorInfo, TensorStats


def info(dtype, file=None, stats=None, name=None):
    return TensorInfo(dtype, [4], stats, file, None, name)


def test_leaves_are_integer_inputs_no_earlier_record_produced():
    ids = info("int64", "tensors/0.in0.npy")
    made = info("int64", "tensors/1.out0.npy")
    records = [
        Record(0, "aten::lift_fresh", "op", "init", 0, inputs=[ids], outputs=[ids]),
        Record(1, "aten::argmax", "op", "forward", 0, inputs=[info("float32", "tensors/1.in0.npy")], outputs=[made]),
        Record(2, "aten::gather", "op", "forward", 0, inputs=[info("float32", "x"), made]),
        Record(3, "aten::index", "op", "forward", 0, inputs=[info("int64", "tensors/3.in0.npy"), info("int64", "b", name="buf")]),
    ]  # fmt: skip
    # 0: the loader's ids; 1: a float input; 2: made by argmax; 3: a new int (a leaf) and a named one (a buffer)
    assert leaf_inputs(records) == {0: [0], 3: [0]}


def test_a_destination_overwritten_unread_is_no_input():
    """``copy.deepcopy`` of a tensor copies into a fresh storage (``UntypedStorage(n).copy_(src)``, no op made the
    storage): what the destination held is uninitialised memory, never the data; the source is."""
    records = [
        Record(0, "aten::copy_", "op", "init", 0, inputs=[info("uint8", "dst"), info("uint8", "src")]),
        Record(1, "aten::fill_.Scalar", "op", "init", 0, inputs=[info("int64", "f")]),
        Record(2, "aten::add_.Tensor", "op", "init", 0, inputs=[info("int64", "a"), info("int64", "b")]),
    ]
    assert leaf_inputs(records) == {0: [1], 2: [0, 1]}  # add_ reads what it writes


def test_statistics_only_leaves_are_told_by_their_statistics():
    s = TensorStats(max=9.0, min=0.0, mean=4.5, norm=20.0)
    made = info("int64", stats=s)
    other = info("int64", stats=TensorStats(max=9.0, min=0.0, mean=4.0, norm=20.0))
    records = [
        Record(0, "aten::argmax", "op", "forward", 0, outputs=[made]),
        Record(1, "aten::gather", "op", "forward", 0, inputs=[info("int64", stats=s), other]),
    ]
    assert leaf_inputs(records) == {1: [1]}
    assert stats_differ(made, other) and not stats_differ(made, info("int64", stats=s))
    assert stats_differ(made, info("int64")) is None  # no statistics: nothing tells


def test_the_fraction_of_elements_that_differ():
    assert differing_fraction([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    assert differing_fraction([[1, 2]], [1, 2]) == 1.0  # another shape
    assert differing_fraction([True, False], [True, False]) == 0.0


def step(out_dir, flip: float, ids_seed: int, mode: str):
    """argmax picks indices of x * flip, a gather reads them; x is fixed, the ids come from ``ids_seed``."""
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 6, (4, 1), generator=torch.Generator().manual_seed(ids_seed))
    with capture(str(out_dir), level="op", mode=mode):
        idx = torch.argmax(x * flip, dim=1, keepdim=True)
        torch.gather(x, 1, idx).sum() + torch.gather(x, 1, ids).sum()
    return str(out_dir)


@pytest.mark.parametrize("mode", ["tensor", "stats"])
def test_indices_an_earlier_op_produced_are_not_the_data(tmp_path, mode):
    ref = step(tmp_path / "ref", 1.0, 3, mode)
    target = step(tmp_path / "target", -1.0, 3, mode)  # argmax of -x: other indices, made inside the step
    report = compare_dumps(target, ref, stats_only=mode == "stats")
    kinds = [c["kind"] for c in report.data["culprits"]]
    assert "data" not in kinds
    assert report.data["culprits"][0]["op"] == "aten::mul.Tensor"  # where it came from: the -1 (an argument)


@pytest.mark.parametrize("mode", ["tensor", "stats"])
def test_other_indices_from_outside_are_the_data(tmp_path, mode):
    ref = step(tmp_path / "ref", 1.0, 3, mode)
    target = step(tmp_path / "target", 1.0, 4, mode)
    top = compare_dumps(target, ref, stats_only=mode == "stats").data["culprits"][0]
    assert (top["kind"], top["name"]) == ("data", "aten::gather#init#1")  # no module ran: phase init
    assert top["verdict"] == ("error" if mode == "tensor" else "suspect")


def test_an_objects_address_in_its_repr_is_no_argument_difference():
    # a torch.Generator argument has no JSON form: its repr, whose address differs in every run
    from ascend_tools.precision.causes import arg_diff

    def call(n, address):
        args = {"args": [n], "kwargs": {"generator": {"repr": f"<torch._C.Generator object at {address}>"}}}
        return Record(0, "aten::randint.generator", "op", "init", 0, args=args)

    assert arg_diff(call(271, "0x7f118a2b0"), call(271, "0x7f3c55e10")) == []
    assert arg_diff(call(271, "0x7f118a2b0"), call(351, "0x7f3c55e10")) == ["args[0]: 271 vs 351"]


def test_random_fills_nothing_reads_are_found():
    stats = TensorStats(max=2.0, min=-2.0, mean=0.0, norm=9.0)
    filled = info("float32", stats=stats)
    records = [
        Record(0, "aten::normal_", "op", "init", 0, inputs=[info("float32")], outputs=[filled]),
        Record(1, "aten::detach", "op", "init", 0, inputs=[filled], outputs=[filled]),
        Record(2, "aten::copy_", "op", "init", 0, inputs=[filled, info("float32", "src")], outputs=[info("float32")]),
        Record(3, "aten::bernoulli_.float", "op", "forward", 0, inputs=[info("float32")], outputs=[info("float32", "m")]),
        Record(4, "aten::mul.Tensor", "op", "forward", 0, inputs=[info("float32", "x"), info("float32", "m")]),
    ]  # fmt: skip
    # 0: viewed, then overwritten by a copy (resize_token_embeddings); 3: a dropout mask the mul reads
    assert unread_random_fills(records) == {0}


def test_a_random_fill_read_through_a_view_is_read():
    """A slice of a fill (another shape: another identity) that an op reads reads the fill; one only overwritten
    does not."""
    whole = info("float32", "tensors/0.out0.npy")
    half = TensorInfo("float32", [2], None, "tensors/1.out0.npy")
    rest = TensorInfo("float32", [2], None, "tensors/3.out0.npy")
    records = [
        Record(0, "aten::uniform_", "op", "init", 0, inputs=[info("float32")], outputs=[whole]),
        Record(1, "aten::slice.Tensor", "op", "init", 0, inputs=[whole], outputs=[half]),
        Record(2, "aten::mul.Tensor", "op", "forward", 0, inputs=[half, info("float32", "x")]),
        Record(3, "aten::normal_", "op", "init", 1, inputs=[info("float32")], outputs=[rest]),
        Record(4, "aten::slice.Tensor", "op", "init", 1, inputs=[rest], outputs=[info("float32", "v")]),
        Record(5, "aten::copy_", "op", "init", 1, inputs=[info("float32", "v"), info("float32", "src")]),
    ]  # fmt: skip
    assert unread_random_fills(records) == {3}


def seeded_step(out_dir, seed: int, resized: bool, mode: str):
    """An embedding initialised from ``seed`` and, where ``resized``, overwritten with fixed values through
    ``.data`` before use, as Hugging Face's resize_token_embeddings does (256 KiB: fresh zeroed pages in both runs,
    so the fill's input, the memory it overwrites, agrees)."""
    ids = torch.randint(0, 512, (3, 8), generator=torch.Generator().manual_seed(0))
    fixed = torch.randn(512, 128, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(seed)
    with capture(str(out_dir), level="op", mode=mode):
        emb = torch.nn.Embedding(512, 128)
        if resized:
            with torch.no_grad():
                emb.weight.data[:, :] = fixed
        emb(ids).relu().sum()
    return str(out_dir)


@pytest.mark.parametrize("mode", ["tensor", "stats"])
def test_other_random_numbers_matter_only_where_read(tmp_path, mode):
    """Runs seeded differently: an initialisation overwritten before use is no cause; one the model reads is, the
    random numbers it drew (kind ``random``, before its parameter that differs at first read)."""
    ref = seeded_step(tmp_path / "r1", 1, True, mode)
    target = seeded_step(tmp_path / "t1", 2, True, mode)
    assert compare_dumps(target, ref, stats_only=mode == "stats").data["culprits"] == []
    ref = seeded_step(tmp_path / "r2", 1, False, mode)
    target = seeded_step(tmp_path / "t2", 2, False, mode)
    culprits = compare_dumps(target, ref, stats_only=mode == "stats").data["culprits"]
    assert [(c["kind"], c["name"]) for c in culprits[:2]] == [
        ("random", "aten::normal_#init#0"),
        ("parameter", "aten::embedding#forward#0"),
    ]
