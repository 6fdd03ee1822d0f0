"""compare names the cause of drift that is not a bad kernel, on real dumps of tiny HF models.

Each scenario: a float32 reference run and a target run with one known cause (plus the benign rounding
noise of its lower precision where it has one), captured at op level through the public ``capture`` API.
Known answers: the op the cause is in, and its kind (``causes.KINDS``). Both the tensor mode and the
statistics-only mode must rank it first; a clean run and a dump against itself must list nothing.
"""

import pytest
import torch
import transformers

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.faults import Fault, FaultInjector

SEQ = 8


def tiny(config_cls, model_cls, **extra):
    torch.manual_seed(0)
    config = config_cls(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        attn_implementation="eager",
        **extra,
    )
    return model_cls(config)


def run(path, model, dtype, mask=None, data_seed=1, autocast=False, **kwargs):
    """One forward and backward of ``model`` (a copy) in ``dtype`` under an op-level tensor capture, on token ids
    drawn with ``data_seed`` (made before the capture: data from outside the recorded ops). ``autocast``: the
    model stays float32 and the forward runs under ``torch.autocast`` in ``dtype`` (mixed precision)."""
    if not autocast:
        model = model.to(dtype)
    model.train()
    ids = torch.randint(0, 128, (2, SEQ), generator=torch.Generator().manual_seed(data_seed))
    torch.manual_seed(2)
    with capture(str(path), level="op", mode="tensor", model=model):
        if mask is not None:  # the user's own additive mask, cast to the model's dtype
            kwargs["attention_mask"] = mask.to(dtype)
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            loss = model(input_ids=ids, labels=ids, **kwargs).loss
        loss.backward()
    return str(path)


def pair(tmp_path, build, target_dtype, change=lambda m: None, mask=None):
    ref_model, target_model = build(), build()
    target_model.load_state_dict(ref_model.state_dict())
    change(target_model)
    ref = run(tmp_path / "ref", ref_model, torch.float32, mask)
    target = run(tmp_path / "target", target_model, target_dtype, mask)
    return target, ref


def first(report):
    assert report.data["culprits"], report.data["summary"]
    return report.data["culprits"][0]


def llama():
    return tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM)


def gpt2(attn_pdrop=0.0):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=SEQ, attn_implementation="eager",
        attn_pdrop=attn_pdrop, resid_pdrop=0.0, embd_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def qwen3():
    return tiny(transformers.Qwen3Config, transformers.Qwen3ForCausalLM, head_dim=8)


def phi3():
    return tiny(transformers.Phi3Config, transformers.Phi3ForCausalLM, pad_token_id=0)


def fp32_min_mask():
    """Causal + left padding (row 1's first 3 tokens), additive, built from float32's min: in fp16 it is
    -inf, and a padded query row, masked everywhere, becomes NaN in the softmax."""
    pos = torch.arange(SEQ)
    allowed = (pos[None, :] <= pos[:, None]).expand(2, SEQ, SEQ).clone()
    allowed[1, :, :3] = False
    return (~allowed)[:, None].float() * torch.finfo(torch.float32).min


@pytest.fixture(scope="module")
def eps_runs(tmp_path_factory):
    def change(m):
        m.model.layers[1].input_layernorm.variance_epsilon = 1e-2

    return pair(tmp_path_factory.mktemp("eps"), llama, torch.bfloat16, change)


@pytest.fixture(scope="module")
def dropout_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dropout")
    ref_model, target_model = gpt2(), gpt2(attn_pdrop=0.1)
    target_model.load_state_dict(ref_model.state_dict())
    return run(tmp / "target", target_model, torch.bfloat16), run(tmp / "ref", ref_model, torch.float32)


@pytest.fixture(scope="module")
def nan_runs(tmp_path_factory):
    return pair(tmp_path_factory.mktemp("nan"), phi3, torch.float16, mask=fp32_min_mask())


@pytest.fixture(scope="module")
def data_runs(tmp_path_factory):
    """The target trained on other token ids (another seed), in bf16: different data plus the usual noise."""
    tmp = tmp_path_factory.mktemp("data")
    ref_model, target_model = llama(), llama()
    target_model.load_state_dict(ref_model.state_dict())
    target = run(tmp / "target", target_model, torch.bfloat16, data_seed=7)
    return target, run(tmp / "ref", ref_model, torch.float32)


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen3"])
def amp_runs(tmp_path_factory, request):
    """A clean mixed-precision target: the fp32 model's forward under bf16 autocast, against fp32."""
    tmp = tmp_path_factory.mktemp("amp")
    build = {"llama": llama, "gpt2": gpt2, "qwen3": qwen3}[request.param]
    ref_model, target_model = build(), build()
    target_model.load_state_dict(ref_model.state_dict())
    target = run(tmp / "target", target_model, torch.bfloat16, autocast=True)
    return target, run(tmp / "ref", ref_model, torch.float32)


@pytest.fixture(scope="module")
def amp_fault_runs(tmp_path_factory):
    """Mixed precision with one faulty bf16 addmm (a fault injector under the capture, as a device kernel)."""
    tmp = tmp_path_factory.mktemp("amp_fault")
    ref_model, target_model = gpt2(), gpt2()
    target_model.load_state_dict(ref_model.state_dict())
    ref = run(tmp / "ref", ref_model, torch.float32)
    with FaultInjector(Fault("aten::addmm", call=3, scale=0.5)) as injector:
        target = run(tmp / "target", target_model, torch.bfloat16, autocast=True)
    assert injector.hit == "aten::addmm#forward#3"
    return target, ref


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory):
    return pair(tmp_path_factory.mktemp("clean"), llama, torch.bfloat16)


MODES = {"tensor": {}, "stats": {"stats_only": True}}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_rmsnorm_eps_in_one_layer_is_a_divergence_with_agreeing_inputs(eps_runs, mode):
    top = first(compare_dumps(*eps_runs, **MODES[mode]))
    assert (top["kind"], top["op"], top["module"]) == (
        "divergence",
        "aten::add.Tensor",
        "model.layers.1.input_layernorm",
    )
    assert any("0.01" in d and "1e-06" in d for d in top["arg_diff"]), top["arg_diff"]
    # the finding's reason says what differs and how far off the output is, not the passing replay's verdict
    # (before: "absolute: max_ulp_err 0.2 <= 16", under an "error" finding)
    assert top["reason"].startswith("arguments differ: ") and "against the reference: " in top["reason"]
    assert " > " in top["reason"].split("against the reference: ")[1]


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_attention_dropout_left_on_is_a_target_only_op(dropout_runs, mode):
    report = compare_dumps(*dropout_runs, **MODES[mode])
    top = first(report)
    assert top["kind"] == "target-only"
    assert top["op"].split("::")[1].split(".")[0] in ("bernoulli_", "native_dropout", "bernoulli")
    assert top["module"].endswith("attn.attn_dropout") or top["module"].endswith("attn")
    # every op after the dropout still pairs with its counterpart: nothing reference-only
    assert report.data["summary"]["unmatched_reference"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_fp32_min_mask_in_fp16_names_the_op_that_made_inf(nan_runs, mode):
    report = compare_dumps(*nan_runs, **MODES[mode])
    top = first(report)
    assert (top["kind"], top["op"], top["module"], top["detail"]) == (
        "nonfinite",
        "aten::_to_copy",
        "",
        "Inf",
    )
    # the mask is cast before the model's first forward: phase init
    assert report.data["summary"]["cause"].startswith("Inf first produced by aten::_to_copy#init#")
    assert "test_drift_causes.py" in report.data["summary"]["cause"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_other_token_ids_are_named_as_different_data_not_as_a_diverging_embedding(data_runs, mode):
    report = compare_dumps(*data_runs, **MODES[mode])
    top = first(report)
    assert (top["kind"], top["op"], top["module"]) == ("data", "aten::embedding", "model.embed_tokens")
    assert "input 1 (int64 [2, 8]) differs" in top["detail"]
    assert report.data["summary"]["cause"].startswith("the runs were given different data: aten::embedding#")
    # its ids differ, so the embedding's output is no divergence "while inputs agree"; nor is anything after it
    assert [c["kind"] for c in report.data["culprits"]].count("divergence") == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_clean_mixed_precision_lists_nothing(amp_runs, mode):
    # Llama: softmax reads scores plus an additive mask of float32's min: measured over the whole tensor the
    # mask's norm hid the scores' bf16 error, and softmax looked like a 300x divergence. GPT-2: each gradient's
    # cast back to float32 split the backward's layer runs at autograd's root-level detach, and the run diff
    # paired attn.c_proj's backward mm with attn.c_attn's (rel. error 9.6, a 2,470x "divergence"). Qwen3 in
    # statistics: the mask sets the scores' min, mean and norm, which hid their error (softmax at 500-660x)
    report = compare_dumps(*amp_runs, **MODES[mode])
    assert report.data["culprits"] == [], report.data["culprits"][:3]


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_faulty_kernel_under_autocast_is_named_first(amp_fault_runs, mode):
    top = first(compare_dumps(*amp_fault_runs, **MODES[mode]))
    # GPT-2's Conv1D is an addmm; call 3 of the forward is block 0's mlp.c_proj (c_attn, attn.c_proj, c_fc first)
    assert (top["name"], top["module"]) == ("aten::addmm#forward#3", "transformer.h.0.mlp.c_proj")
    assert top["kind"] == ("kernel" if mode == "tensor" else "divergence")


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_clean_and_self_compares_list_nothing(clean_runs, mode):
    target, ref = clean_runs
    for a, b in ((target, ref), (ref, ref), (target, target)):
        report = compare_dumps(a, b, **MODES[mode])
        assert report.data["culprits"] == [], (a, b, report.data["culprits"][:3])
        assert report.data["summary"]["cause"] == "none found"
