"""Two-run compare names the op that introduced the error: one fault injected into exactly one call.

The reference is the model in float32, the target the same weights in bfloat16 with one faulty call
(``faults.FaultInjector`` below the capture, as a faulty kernel on the device would be). Known answer: the
injector's ``hit``. Tensor-mode compare (replay in float64) must rank it first; the statistics-only view of
the same dumps must have it in its top 3 (culprits, then hints: these faults amplify their inputs' error
7-59x in statistics, below the bar where statistics prove anything); a clean bf16 run must have no proven
culprit.
"""

import contextlib

import pytest
import torch
import transformers

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.faults import Fault, FaultInjector

FAMILIES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
}
FAULTS = {
    "forward_matmul": Fault("aten::mm", call=5, kind="perturb"),
    # the attention softmax of layer 1, computed naively in fp16 on a saturating part
    "softmax_fp16_saturation": Fault("aten::_softmax", call=1, kind="fp16_saturate"),
    "backward_matmul": Fault("aten::mm", call=7, phase="backward", kind="perturb"),
}


def build(family):
    config_cls, model_cls = FAMILIES[family]
    torch.manual_seed(0)
    config = config_cls(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        attn_implementation="eager",
    )
    model = model_cls(config)
    with torch.no_grad():  # attention logits up to ~25: exp() passes fp16's 65504 above 11.1, so it saturates
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(30.0)
            layer.self_attn.k_proj.weight.mul_(10.0)
    return model_cls, config, model.state_dict()


def dump(tmp_path, name, family_model, dtype, fault=None):
    model_cls, config, state = family_model
    model = model_cls(config)
    model.load_state_dict(state)
    model.to(dtype)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    injector = FaultInjector(fault) if fault else None
    path = str(tmp_path / name)
    with (
        injector or contextlib.nullcontext(),
        capture(path, level="op", mode="tensor", model=model, stack=False),
    ):
        model(input_ids=ids, labels=ids).loss.backward()
    return path, injector.hit if injector else None


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def runs(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    family_model = build(request.param)
    ref, _ = dump(tmp, "ref", family_model, torch.float32)
    clean, _ = dump(tmp, "clean", family_model, torch.bfloat16)
    faulty = {name: dump(tmp, name, family_model, torch.bfloat16, fault) for name, fault in FAULTS.items()}
    return ref, clean, faulty


def culprit_names(report):
    return [c["name"] for c in report.data["culprits"]]


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_tensor_compare_ranks_the_faulty_call_first(runs, fault):
    ref, _, faulty = runs
    path, hit = faulty[fault]
    assert hit is not None, "the fault did not fire"
    report = compare_dumps(path, ref)
    assert culprit_names(report)[0] == hit
    assert report.data["culprits"][0]["verdict"] == "error"


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_stats_only_compare_has_the_faulty_call_in_its_top_3(runs, fault):
    ref, _, faulty = runs
    path, hit = faulty[fault]
    report = compare_dumps(path, ref, stats_only=True)
    ranked = culprit_names(report) + [h["name"] for h in report.data["hints"]]
    assert hit in ranked[:3]


@pytest.mark.slow
def test_clean_bf16_run_has_no_proven_culprit(runs):
    ref, clean, _ = runs
    report = compare_dumps(clean, ref)
    assert report.data["summary"]["culprits"] == 0
    assert all(c["verdict"] != "error" for c in report.data["culprits"])
    # while most pairs differ from the fp32 reference by bf16 rounding, which is not blamed on anyone
    assert report.data["summary"]["verdicts"]["error"] > 0
    # only outputs that are off against the reference are replayed; a passing one cannot be the source
    pairs = report.data["pairs"]
    assert not any(p["method"] == "replay" for p in pairs if p["verdict"] == "pass")
    assert any(p["method"] == "replay" for p in pairs if p["verdict"] == "error")
