"""The msprobe reader against real msprobe 26.2 dumps (tests/data/msprobe, made by make_dump.py there)."""

import csv
import glob
import json
import math
import os
import re
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascend_tools.errors import InputError
from ascend_tools.precision import metrics
from ascend_tools.precision.dumps import open_dump
from ascend_tools.precision.msprobe_reader import MsprobeDump

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "msprobe")
DUMPS = ["fp32_tensor", "bf16_tensor", "fp32_stats", "bf16_stats"]
TENSOR_DUMPS = ["fp32_tensor", "bf16_tensor"]


def rank_dir(variant):
    (found,) = glob.glob(os.path.join(DATA, variant, "step0", "*", "dump.json"))
    return os.path.dirname(found)


def entries(variant):
    """dump.json's entries, read independently of the reader."""
    with open(os.path.join(rank_dir(variant), "dump.json")) as f:
        return json.load(f)["data"]


def tensors_of(value, out):
    """msprobe's tensor dicts in ``value``, depth first (input_args, then input_kwargs, ...)."""
    if isinstance(value, list):
        for v in value:
            tensors_of(v, out)
    elif isinstance(value, dict):
        if "type" in value:
            if "dtype" in value and "shape" in value:
                out.append(value)
        else:
            for v in value.values():
                tensors_of(v, out)
    return out


def expected_io(key, entry):
    if key.split(".")[-2] == "parameters_grad" or key.endswith(".parameters_grad"):
        return [], tensors_of(entry, [])
    if ".forward" in key:
        inputs = tensors_of(entry.get("input_args", []), [])
        tensors_of(entry.get("input_kwargs", {}), inputs)
        tensors_of(entry.get("parameters", {}), inputs)
        return inputs, tensors_of(entry.get("output", []), [])
    return tensors_of(entry.get("input", []), []), tensors_of(entry.get("output", []), [])


def open_variant(variant):
    dump = MsprobeDump.find(os.path.join(DATA, variant), None)
    assert dump is not None
    return dump


# ---- structure -------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", DUMPS)
def test_one_record_per_entry_in_order(variant):
    dump = open_variant(variant)
    assert dump.steps() == [0]
    assert dump.meta["task"] == ("tensor" if "tensor" in variant else "statistics")
    records = list(dump.records(0))
    data = entries(variant)
    assert len(records) == len(data)
    assert [dump.source_name(r) for r in records] == list(data)
    assert [r.id for r in records] == list(range(len(records)))
    assert all(r.step == 0 and r.rank == 0 for r in records)


@pytest.mark.parametrize("variant", DUMPS)
def test_shapes_dtypes_stats_match_dump_json(variant):
    dump = open_variant(variant)
    data = entries(variant)
    checked = 0
    for record in dump.records(0):
        want_in, want_out = expected_io(dump.source_name(record), data[dump.source_name(record)])
        for got, want in [*zip(record.inputs, want_in), *zip(record.outputs, want_out)]:
            assert got.dtype == want["dtype"].replace("torch.", "")
            assert got.shape == want["shape"]
            for ours, theirs in (("max", "Max"), ("min", "Min"), ("mean", "Mean"), ("norm", "Norm")):
                value = want.get(theirs)
                assert getattr(got.stats, ours) == (None if value is None else float(value))
            if "tensor" in variant:
                assert got.file == "dump_tensor_data/" + want["data_name"]
            else:
                assert got.file is None
            checked += 1
        assert (len(record.inputs), len(record.outputs)) == (len(want_in), len(want_out))
    assert checked > 100


def test_name_mapping():
    dump = open_variant("fp32_stats")
    records = list(dump.records(0))
    by_source = {dump.source_name(r): r for r in records}

    linear = by_source["Functional.linear.0.forward"]
    assert (linear.name, linear.kind, linear.phase, linear.call) == ("Functional.linear", "op", "forward", 0)
    assert linear.module == "model.layers.0.self_attn.q_proj"
    assert linear.key == "Functional.linear#forward#0"
    # input and weight are tensors 0 and 1 of the call; bias=None stays None (Llama has no bias)
    assert linear.args["args"] == [{"tensor": 0}, {"tensor": 1}, None]
    assert linear.inputs[1].shape == [8, 8]

    backward = by_source["Functional.linear.0.backward"]
    assert (backward.name, backward.phase, backward.call) == ("Functional.linear", "backward", 0)
    assert backward.module == "model.layers.0.self_attn.q_proj"  # the forward call's module
    assert backward.stack == linear.stack  # msprobe keeps no backward stack: the forward call's
    assert backward.inputs[0].shape == linear.outputs[0].shape  # grad of the output flows in

    sdpa = by_source["Functional.scaled_dot_product_attention.0.forward"]
    assert sdpa.args["kwargs"]["is_causal"] is True
    assert sdpa.args["kwargs"]["scale"] == 0.5

    mlp = by_source["Module.model.layers.0.mlp.LlamaMLP.forward.0"]
    assert (mlp.name, mlp.kind, mlp.phase, mlp.call, mlp.module) == (
        "model.layers.0.mlp",
        "module",
        "forward",
        0,
        "model.layers.0.mlp",
    )
    q_proj = by_source["Module.model.layers.0.self_attn.q_proj.Linear.forward.0"]
    assert q_proj.args["params"] == {"weight": {"tensor": 1}}
    grads = by_source["Module.model.layers.0.self_attn.q_proj.Linear.parameters_grad.0"]
    assert (grads.name, grads.kind, grads.phase) == (
        "model.layers.0.self_attn.q_proj.parameters_grad",
        "module",
        "backward",
    )
    assert [t.shape for t in grads.outputs] == [[8, 8]] and grads.inputs == []
    mlp_bwd = by_source["Module.model.layers.0.mlp.LlamaMLP.backward.0"]
    assert (mlp_bwd.name, mlp_bwd.phase) == ("model.layers.0.mlp", "backward")

    # keys are unique within a step
    assert len({r.key for r in records}) == len(records)
    # L1 dumps have an empty construct.json: no module paths
    assert all(r.module == "" for r in open_variant("fp32_tensor").records(0))


def test_stacks():
    dump = open_variant("fp32_stats")
    records = list(dump.records(0))
    with open(os.path.join(rank_dir("fp32_stats"), "stack.json")) as f:
        raw = json.load(f)
    by_source = {dump.source_name(r): r for r in records}
    for frames_names, frames in raw.values():
        ids = {by_source[name].stack for name in frames_names}
        assert len(ids) == 1  # one stack, one id
        stack = dump.stack(ids.pop())
        assert len(stack) == len(frames)
        innermost = frames[0]  # msprobe lists the innermost frame first; we list it last
        path = innermost.split(",")[0][len("File ") :]
        line = innermost.split(", line ")[1].split(",")[0]
        assert stack[-1].startswith(f"{path}:{line} in ")
    linear = by_source["Functional.linear.0.forward"]
    assert "torch/nn/modules/linear.py" in dump.stack(linear.stack)[-1]
    assert any("make_dump.py" in frame for frame in dump.stack(linear.stack))
    assert dump.stack(None) == [] and dump.stack(10**6) == []
    assert all(r.stack is not None for r in records if r.kind == "op")


# ---- tensors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", TENSOR_DUMPS)
def test_tensors_load_and_agree_with_msprobe_stats(variant):
    dump = open_variant(variant)
    loaded = 0
    for record in dump.records(0):
        for info in record.inputs + record.outputs:
            tensor = dump.load_tensor(info, 0)
            assert isinstance(tensor, torch.Tensor)
            assert str(tensor.dtype) == "torch." + info.dtype
            assert list(tensor.shape) == info.shape
            stats = info.stats
            if tensor.numel() == 0 or tensor.dtype == torch.bool:
                continue
            # msprobe computed max/min/mean/norm in the tensor's own dtype: recompute the same way
            assert float(tensor.max()) == stats.max and float(tensor.min()) == stats.min
            if tensor.is_floating_point():
                assert float(tensor.mean()) == pytest.approx(stats.mean, rel=1e-5, abs=1e-6)
                assert float(torch.norm(tensor)) == pytest.approx(stats.norm, rel=1e-5, abs=1e-6)
                # and the stats agree with an fp64 recomputation within the dtype's resolution
                tol = 2.0**-7 if tensor.dtype == torch.bfloat16 else 1e-5
                assert float(tensor.double().mean()) == pytest.approx(stats.mean, rel=tol, abs=tol)
            loaded += 1
    assert loaded > 100


def test_statistics_dump_has_no_tensors():
    dump = open_variant("fp32_stats")
    record = next(iter(dump.records(0)))
    assert dump.meta["mode"] == "stats"
    assert dump.load_tensor(record.inputs[0], 0) is None


def test_missing_and_bad_tensor_files(tmp_path):
    root = tmp_path / "dump"
    shutil.copytree(os.path.join(DATA, "fp32_tensor"), root)
    dump = MsprobeDump.find(str(root), None)
    record = next(iter(dump.records(0)))
    tensor_dir = os.path.join(dump._rank_dir(0), "dump_tensor_data")
    target = os.path.join(tensor_dir, os.path.basename(record.inputs[1].file))
    with open(target, "wb") as f:
        f.write(b"not a zip")
    with pytest.raises(InputError, match="cannot read tensor") as err:
        dump.load_tensor(record.inputs[1], 0)
    assert target in str(err.value) and "\n" not in str(err.value)
    os.remove(target)
    with pytest.raises(InputError, match="tensor file missing"):
        dump.load_tensor(record.inputs[1], 0)
    # a pickle that is not a plain tensor is refused by weights_only loading
    torch.save({"x": torch.zeros(1)}, os.path.join(tensor_dir, os.path.basename(record.inputs[0].file)))
    with pytest.raises(InputError, match="not a tensor"):
        dump.load_tensor(record.inputs[0], 0)


# ---- find ------------------------------------------------------------------------------------------
def test_find_accepts_each_path_form(tmp_path):
    rdir = rank_dir("bf16_tensor")
    for path in (
        os.path.join(DATA, "bf16_tensor"),
        os.path.dirname(rdir),
        rdir,
        os.path.join(rdir, "dump.json"),
    ):
        dump = MsprobeDump.find(path, None)
        assert dump is not None, path
        assert dump.steps() == [0] and dump.rank == 0
        assert len(list(dump.records(0))) == len(entries("bf16_tensor"))
    assert isinstance(open_dump(os.path.join(DATA, "bf16_stats")), MsprobeDump)
    assert MsprobeDump.find(str(tmp_path), None) is None
    assert MsprobeDump.find(DATA, None) is None  # holds dumps below, but is none itself
    assert MsprobeDump.find(os.path.join(DATA, "README.md"), None) is None
    assert MsprobeDump.find(str(tmp_path / "absent"), None) is None


def test_steps_and_ranks(tmp_path):
    """Several steps and ranks: rank dirs named rank<N>, the older bare "rank", or proc<pid>."""
    src = rank_dir("fp32_stats")
    for step in (0, 3):
        for rank in ("rank0", "rank2"):
            shutil.copytree(src, tmp_path / f"step{step}" / rank)
    (tmp_path / "step7").mkdir()  # a step without this rank's dump is skipped
    dump = MsprobeDump.find(str(tmp_path), None)
    assert (dump.steps(), dump.rank) == ([0, 3], 0)
    records = list(dump.records(3))
    assert records[0].step == 3 and records[0].call == 0  # call indices restart per step
    two = MsprobeDump.find(str(tmp_path), 2)
    assert two.rank == 2 and all(r.rank == 2 for r in two.records(0))
    assert MsprobeDump.find(str(tmp_path / "step3"), 2).steps() == [3]
    assert MsprobeDump.find(str(tmp_path / "step3" / "rank2"), None).rank == 2
    with pytest.raises(InputError, match="no rank 5"):
        MsprobeDump.find(str(tmp_path), 5)
    with pytest.raises(InputError, match="no step 1"):
        list(dump.records(1))
    # the same stack in two steps gets the same id
    assert [r.stack for r in dump.records(0)] == [r.stack for r in dump.records(3)]

    old = tmp_path / "old"
    shutil.copytree(src, old / "step0" / "rank")
    assert MsprobeDump.find(str(old), None).rank == 0


# ---- bad input -------------------------------------------------------------------------------------
def copy_rank_dir(tmp_path, variant="fp32_stats"):
    dest = tmp_path / "step0" / "proc1"
    shutil.copytree(rank_dir(variant), dest)
    return dest


def test_truncated_dump_json_keeps_the_entries_before_the_cut(tmp_path):
    dest = copy_rank_dir(tmp_path)
    whole = json.loads((dest / "dump.json").read_text())["data"]
    text = (dest / "dump.json").read_text()
    cut = text[: len(text) // 2]
    (dest / "dump.json").write_text(cut)
    dump = MsprobeDump.find(str(tmp_path), None)
    names = [dump.source_name(r) for r in dump.records(0)]
    keys = list(whole)  # the reference: json.loads of the whole file
    n = len(names)
    assert n > 10 and names == keys[:n]  # every entry before the cut, in order
    assert json.dumps(keys[n]) in cut and json.dumps(keys[n + 1]) not in cut  # entry n is the one cut
    (problem,) = dump.problems
    line = cut[: cut.index(json.dumps(keys[n]))].count("\n") + 1
    assert problem.startswith(
        f"{dest / 'dump.json'}: 2 unreadable entries skipped (first: line {line}, entry {keys[n]!r}: bad JSON"
    )
    assert "\n" not in problem
    with pytest.raises(InputError, match='no "data" object'):  # cut before "data": nothing to read
        (dest / "dump.json").write_text(text[:20])
        MsprobeDump.find(str(tmp_path), None)


def test_corrupt_files_name_the_file(tmp_path):
    dest = copy_rank_dir(tmp_path)
    (dest / "dump.json").write_text(
        '{"task": "tensor", "data": {"Functional.linear.0.forward": {"input_args": '
        '[{"type": "torch.Tensor", "dtype": "torch.float32", "shape": "big"}]}}}'
    )
    dump = MsprobeDump.find(str(tmp_path), None)
    assert list(dump.records(0)) == []  # the bad entry is skipped and counted, not fatal to the dump
    assert len(dump.problems) == 1 and re.search(
        r"dump\.json: 1 unreadable entry skipped \(first: line 1, entry 'Functional\.linear\.0\.forward': tensor shape",
        dump.problems[0],
    ), dump.problems
    (dest / "dump.json").write_text(
        '{"task": "tensor", "data": {"Functional.linear.0.forward": {"input_args": '
        '[{"type": "torch.Tensor", "dtype": "torch.float32", "shape": [1], '
        '"data_name": "../../secret.pt"}]}}}'
    )
    dump = MsprobeDump.find(str(tmp_path), None)
    assert list(dump.records(0)) == []
    assert "not a plain file name" in dump.problems[0], dump.problems
    (dest / "dump.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"not an msprobe dump\.json"):
        MsprobeDump.find(str(tmp_path), None)
    (dest / "dump.json").write_text('{"data": {}}')
    (dest / "stack.json").write_text("{oops")
    dump = MsprobeDump.find(str(tmp_path), None)
    assert list(dump.records(0)) == []
    assert any(
        re.search(r"stack\.json: 1 unreadable entry skipped \(first: line 1: ", p) for p in dump.problems
    )


MSPROBE_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["torch.Tensor", "torch.float32", "Max", "forward", "backward", "x.pt", "../x.pt"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "dtype",
                    "shape",
                    "Max",
                    "Min",
                    "Mean",
                    "Norm",
                    "data_name",
                    "value",
                    "input_args",
                    "input_kwargs",
                    "output",
                    "input",
                    "parameters",
                    "md5",
                    "weight",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
ENTRY_NAMES = st.sampled_from(
    [
        "Functional.linear.0.forward",
        "Torch.matmul.1.backward",
        "Module.a.b.Linear.forward.0",
        "Module.Linear.backward.0",
        "Module.a.Linear.parameters_grad.0",
        "Module.a.Linear.parameters_grad",
        "Aten.mm.default.2.forward",
        "Module.forward.0",
        "weird",
        "",
        "a.b.c",
        "Cell.x.Dense.forward.1",
    ]
) | st.text(max_size=12)


def _mangle(value, data):
    """Replace one randomly chosen value nested in ``value`` by arbitrary JSON."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        value[key] = _mangle(value[key], data)
        return value
    if isinstance(value, list) and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        value[i] = _mangle(value[i], data)
        return value
    return data.draw(MSPROBE_JSON)


def _read_everything(root):
    """What a compare does with a dump; InputError is the only acceptable failure."""
    try:
        dump = MsprobeDump.find(str(root), None)
        if dump is None:
            return
        for step in dump.steps():
            for record in dump.records(step):
                json.dumps(record.to_json())
                dump.stack(record.stack)
                for info in record.inputs + record.outputs:
                    dump.load_tensor(info, step)
    except InputError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mangled_real_dump(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("fuzz")
    dest = root / "step0" / "proc7"
    dest.mkdir(parents=True)
    variant = data.draw(st.sampled_from(["fp32_tensor", "bf16_stats"]))
    for name in ("dump.json", "stack.json", "construct.json"):
        with open(os.path.join(rank_dir(variant), name)) as f:
            raw = json.load(f)
        if data.draw(st.booleans()):
            raw = _mangle(raw, data)
        text = json.dumps(raw)
        if data.draw(st.integers(0, 9)) == 0:
            text = text[: data.draw(st.integers(0, len(text)))]
        (dest / name).write_text(text)
    _read_everything(root)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    task=st.sampled_from(["tensor", "statistics", None]),
    data=st.dictionaries(ENTRY_NAMES, MSPROBE_JSON, max_size=6) | MSPROBE_JSON,
    raw=st.none() | st.binary(max_size=64),
)
def test_fuzz_random_dump_json(tmp_path_factory, task, data, raw):
    root = tmp_path_factory.mktemp("fuzz")
    dest = root / "step0" / "rank0"
    dest.mkdir(parents=True)
    (dest / "dump_tensor_data").mkdir()
    (dest / "dump_tensor_data" / "x.pt").write_bytes(b"\x80\x04junk")
    if raw is not None:
        (dest / "dump.json").write_bytes(raw)
    else:
        (dest / "dump.json").write_text(json.dumps({"task": task, "data": data}))
    _read_everything(root)


# ---- metrics agree with msprobe's compare on the same pairs ----------------------------------------------
def _msprobe_rows():
    with open(os.path.join(DATA, "msprobe_compare_result.csv"), newline="") as f:
        return [row for row in csv.DictReader(f) if row["cosine"] not in ("unsupported", "N/A", "nan", "")]


def _tensors_by_data_name(variant):
    dump = open_variant(variant)
    out = {}
    for record in dump.records(0):
        for info in record.inputs + record.outputs:
            out[os.path.basename(info.file)[: -len(".pt")]] = dump.load_tensor(info, 0)
    return out


def test_msprobe_compare_result_covers_the_dumps():
    rows = _msprobe_rows()
    target = _tensors_by_data_name("bf16_tensor")
    assert len(rows) > 100
    assert all(row["name"] in target for row in rows)


def test_metrics_agree_with_msprobe_compare():
    target = _tensors_by_data_name("bf16_tensor")
    reference = _tensors_by_data_name("fp32_tensor")
    compared = rel_checked = 0
    for row in _msprobe_rows():
        t, r = target[row["name"]], reference[row["golden_name"]]
        if t.numel() < 2 or not (t.is_floating_point() and r.is_floating_point()):
            continue  # msprobe reports 0-d tensors and non-float pairs with its own conventions
        rel_checked += bool(((r != 0) | (t == 0)).all())
        result = metrics.compare_tensors(t, r)
        cosine, max_abs, max_rel = (float(row[k]) for k in ("cosine", "max_abs_err", "max_rel_err"))
        assert result.max_abs_err == pytest.approx(max_abs, rel=1e-6, abs=1e-11), row["name"]
        if (
            float(torch.linalg.vector_norm(r.double())) > 0
            and float(torch.linalg.vector_norm(t.double())) > 0
        ):
            assert result.cosine == pytest.approx(cosine, abs=2e-6), row["name"]
        if bool(((r != 0) | (t == 0)).all()) and math.isfinite(max_rel):
            # where the reference is 0 msprobe adds float32 eps to both sides (a convention of its own):
            # compare where every zero of the reference is a zero of the target too (error 0 either way)
            assert result.max_rel_err == pytest.approx(max_rel, rel=1e-5, abs=1e-11), row["name"]
        compared += 1
    assert compared > 150 and rel_checked > 150
