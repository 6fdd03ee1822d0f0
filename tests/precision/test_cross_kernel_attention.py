"""Each device runs its own fused attention kernel behind ``F.scaled_dot_product_attention`` (Hugging Face's default
attention): the CPU's ``_scaled_dot_product_flash_attention_for_cpu``, CUDA's ``_scaled_dot_product_efficient_attention``
(or flash, cuDNN) with more outputs (a log-sum-exp padded to 32 rows, RNG seed and offset) and its own argument
order. A target dumped on one device and a reference on another must pair them, judge what both compute (the
attention, and backward the gradients of q, k and v) and nothing else.

The GPU side here is the CPU dump of the same run with its attention records rewritten to the schema of CUDA's
memory-efficient kernel (``native_functions.yaml``): no GPU is needed to make the records a GPU run writes."""

import copy
import json
import shutil

import torch
from tiny_llama import build

from ascend_tools.precision import capture
from ascend_tools.precision.align import align, shared_outputs
from ascend_tools.precision.causes import arg_diff
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.dumps import open_dump
from ascend_tools.precision.records import Record

CPU = "aten::_scaled_dot_product_flash_attention_for_cpu"
CUDA = "aten::_scaled_dot_product_efficient_attention"


def _stats(value, n):
    return {
        "max": value,
        "min": value,
        "mean": value,
        "norm": abs(value) * n**0.5,
        "nan": 0,
        "inf": 0,
        "sat": 0,
    }


def _lse_padded(rec):
    """The efficient kernel's log-sum-exp: rows padded to a multiple of 32, +inf there (as a kernel may leave
    them): a value the CPU's has no counterpart for, which must not read as an Inf the target introduced."""
    b, h, s = rec["outputs"][1]["shape"]
    pad = -(-s // 32) * 32
    stats = dict(rec["outputs"][1]["stats"], max=float("inf"), inf=b * h * (pad - s))
    return {"dtype": "float32", "shape": [b, h, pad], "stats": stats}


def _as_cuda(rec):
    """A CPU attention record as CUDA's memory-efficient kernel writes it (forward or backward)."""
    rec = copy.deepcopy(rec)
    seed = {"dtype": "int64", "shape": [], "stats": _stats(1234.0, 1)}
    if rec["name"] == CPU:
        rec["name"] = CUDA
        rec["outputs"] = [rec["outputs"][0], _lse_padded(rec), seed, dict(seed)]
        # (query, key, value, attn_bias, compute_log_sumexp, dropout_p, is_causal, *, scale)
        rec["args"]["args"] = [*rec["args"]["args"][:3], None, True, 0.0, True]
    else:
        rec["name"] = CUDA + "_backward"
        grad_bias = {"dtype": "float32", "shape": [0]}
        rec["outputs"] = [*rec["outputs"][:3], grad_bias]
        # (grad_out, query, key, value, attn_bias, out, logsumexp, philox_seed, philox_offset, dropout_p,
        #  grad_input_mask, is_causal, *, scale)
        slots = rec["args"]["args"][:6]
        rec["args"]["args"] = [
            *slots[:4],
            None,
            *slots[4:],
            {"tensor": 6},
            {"tensor": 7},
            0.0,
            [True] * 3 + [False],
            True,
        ]
        rec["args"]["kwargs"] = {"scale": rec["args"]["kwargs"]["scale"]}
        rec["inputs"] = rec["inputs"] + [seed, dict(seed)]
    return rec


def _dumps(tmp_path):
    model = build(attn_implementation="sdpa")
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    ref = tmp_path / "cpu"
    with capture(str(ref), level="op", mode="stats"):
        model(input_ids=ids, labels=ids).loss.backward()
    gpu = tmp_path / "gpu"
    shutil.copytree(ref, gpu)
    path = gpu / "rank0" / "step0" / "records.jsonl"
    lines = path.read_text().splitlines()
    rewritten = [
        json.dumps(_as_cuda(json.loads(x))) if '"aten::_scaled_dot_product' in x else x for x in lines
    ]
    assert rewritten != lines
    path.write_text("\n".join(rewritten) + "\n")
    return str(gpu), str(ref)


def test_a_gpu_dump_pairs_its_attention_kernel_with_the_cpus(tmp_path):
    gpu, ref = _dumps(tmp_path)
    t, r = (list(open_dump(p).records(0)) for p in (gpu, ref))
    pairs = align(t, r)
    attention = [p for p in pairs if (p.target or p.reference).name.startswith("aten::_scaled_dot_product")]
    assert len(attention) == 4  # forward and backward of two layers, each paired
    assert all(p.target is not None and p.reference is not None for p in attention)
    assert {(p.target.name, p.reference.name) for p in attention} == {
        (CUDA, CPU),
        (CUDA + "_backward", CPU + "_backward"),
    }
    assert [shared_outputs(p.target, p.reference) for p in attention] == [1, 1, 3, 3]
    # nothing listed: the padded log-sum-exp's +Inf, the seed and the argument order are the kernel's own
    report = compare_dumps(gpu, ref, stats_only=True)
    assert report.data["culprits"] == []


def _record(name, args, scale):
    return Record(
        id=0, name=name, kind="op", phase="forward", call=0, args={"args": args, "kwargs": {"scale": scale}}
    )


def test_two_kernels_compare_the_keyword_arguments_both_name():
    """Positional arguments are each kernel's own order; ``scale``, named by both, is compared."""
    q, k, v = ({"tensor": i} for i in range(3))
    cuda = _record(CUDA, [q, k, v, None, True, 0.0, True], 0.25)
    assert arg_diff(cuda, _record(CPU, [q, k, v, 0.0, True], 0.25)) == []
    assert arg_diff(cuda, _record(CPU, [q, k, v, 0.0, True], 0.125)) == ["kwargs.scale: 0.25 vs 0.125"]
    # one kernel against itself: every argument, as before
    assert arg_diff(cuda, _record(CUDA, [q, k, v, None, True, 0.1, True], 0.25)) == ["args[5]: 0.0 vs 0.1"]
