"""A user's training script for the held-out drift suite (tests/precision/test_heldout_suite.py): one step (forward,
backward, optimizer step) of a tiny Hugging Face model, run unchanged under ``ascend-doctor dump``/``shadow``.

``python heldout_train.py SCENARIO ROLE``: ROLE ``ref`` is the float32 reference, ``clean`` the target's dtype
without the cause, ``target`` the target's dtype with the scenario's one cause. Every role builds the same
weights and casts the model inside the run (``model.to(dtype)`` after the capture started, as under the CLI).
A faulty kernel is a CPU kernel registered below every dispatch mode (as a device kernel is), wrong on one call
of the device's dtype only: the float64 replays of compare and shadow, and shadow's same-dtype re-run (a later
call), get the correct kernel.

``HELDOUT_DEVICE=cuda``: the clean and target roles run on that device (the faulty kernel registered for it alone),
the reference stays on the CPU: the cross-device comparison a port makes (NPU target, GPU or CPU reference).
``HELDOUT_ATTN=sdpa``: Hugging Face's default attention instead of eager (on a GPU, CUDA's fused kernels against
the CPU's).
"""

import os
import sys
from typing import Any, Callable, Dict

import torch
import transformers

SEQ, VOCAB = 8, 128
DEVICE = torch.device(os.environ.get("HELDOUT_DEVICE", "cpu"))
ATTENTION = os.environ.get("HELDOUT_ATTN", "eager")  # sdpa: each device's own fused attention kernel
TINY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB
)


def gpt2(**extra):
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_embd=32,
            n_layer=2,
            n_head=4,
            vocab_size=VOCAB,
            n_positions=SEQ,
            attn_pdrop=0.0,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            **extra,
        )
    )


def neox(**extra):
    return transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**TINY, **extra))


def qwen3(**extra):
    return transformers.Qwen3ForCausalLM(
        transformers.Qwen3Config(**TINY, num_key_value_heads=2, head_dim=8, **extra)
    )


def phi3(**extra):
    return transformers.Phi3ForCausalLM(
        transformers.Phi3Config(**TINY, num_key_value_heads=2, pad_token_id=0, **extra)
    )


def phi(**extra):
    return transformers.PhiForCausalLM(transformers.PhiConfig(**TINY, **extra))


def stablelm(**extra):
    return transformers.StableLmForCausalLM(
        transformers.StableLmConfig(**TINY, num_key_value_heads=2, **extra)
    )


def llama(**extra):
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY, num_key_value_heads=2, **extra))


# --- one faulty kernel, below every dispatch mode ------------------------------------------------------------

_LIBS = []


def faulty_kernel(op: str, call: int, phase: str, wrong: Callable[..., torch.Tensor]) -> None:
    """Register ``wrong(*args)`` as the CPU kernel of ``aten::op`` for call ``call`` (in ``phase``) of a
    non-float64 dtype; every other call computes ``correct`` (see ``CORRECT``)."""
    seen = [0]
    correct = CORRECT[op]

    def kernel(*args: Any, **kwargs: Any) -> torch.Tensor:
        first = args[0]
        now = "backward" if torch._C._current_graph_task_id() != -1 else "forward"
        if first.dtype != torch.float64 and now == phase:
            seen[0] += 1
            if seen[0] - 1 == call:
                return wrong(*args, **kwargs)
        return correct(*args, **kwargs)

    lib = torch.library.Library("aten", "IMPL")
    # the device's kernel only: on a GPU the CPU (the reference, shadow's replays) keeps torch's own
    lib.impl(op, kernel, "CUDA" if DEVICE.type == "cuda" else "CPU")
    _LIBS.append(lib)


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.bmm.default(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0)


def _perturbed(x: torch.Tensor) -> torch.Tensor:
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.1).to(x.device)
    return torch.where(mask, x * 1.5, x)


def _gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    xd = x.double()
    if approximate == "tanh":
        y = 0.5 * xd * (1 + torch.tanh(0.7978845608028654 * (xd + 0.044715 * xd**3)))
    else:
        y = 0.5 * xd * (1 + torch.erf(xd * 0.7071067811865476))
    return y.to(x.dtype)


CORRECT: Dict[str, Callable[..., torch.Tensor]] = {
    "mm": lambda a, b: _bmm(a.double(), b.double()).to(a.dtype),
    "addmm": lambda s, a, b, beta=1, alpha=1: (beta * s.double() + alpha * _bmm(a.double(), b.double())).to(
        a.dtype
    ),
    "gelu": _gelu,
}


def mm_fault(call: int, phase: str) -> Callable[[], None]:
    return lambda: faulty_kernel("mm", call, phase, lambda a, b: _perturbed(CORRECT["mm"](a, b)))


def addmm_fault(call: int) -> Callable[[], None]:
    return lambda: faulty_kernel(
        "addmm", call, "forward", lambda *args, **kw: _perturbed(CORRECT["addmm"](*args, **kw))
    )


def fast_gelu(call: int) -> Callable[[], None]:
    """A GELU kernel that computes x * sigmoid(1.702 x) (rel L2 ~1% from GELU)."""
    return lambda: faulty_kernel(
        "gelu",
        call,
        "forward",
        lambda x, approximate="none": (x.double() * torch.sigmoid(1.702 * x.double())).to(x.dtype),
    )


# --- the causes ------------------------------------------------------------------------------------------------


def stale_weight(model: torch.nn.Module) -> None:
    """A checkpoint key that did not load (renamed upstream, ``strict=False``): the weight keeps another init."""
    with torch.no_grad():
        w = model.model.layers[1].mlp.down_proj.weight
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(7)) * w.std())


def rope_in_bf16(model: torch.nn.Module) -> None:
    """Rotary angles computed in the model's dtype (HF computes them in float32)."""
    rotary = model.model.rotary_emb

    def low_precision(x: torch.Tensor, position_ids: torch.Tensor) -> Any:
        inv = rotary.inv_freq.to(x.dtype)
        freqs = position_ids.to(x.dtype)[:, :, None] * inv[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * rotary.attention_scaling).to(x.dtype), (emb.sin() * rotary.attention_scaling).to(
            x.dtype
        )

    rotary.forward = low_precision


def layer_norm_eps(model: torch.nn.Module) -> None:
    model.gpt_neox.layers[1].input_layernorm.eps = 1e-1


def padding_mask(fill: float) -> torch.Tensor:
    """Causal + right padding of row 1 (no query row masked everywhere: in fp16 such a row's softmax is
    uniform where fp32's is not), additive, ``fill`` where masked (float32's min is -inf in fp16)."""
    pos = torch.arange(SEQ)
    allowed = (pos[None, :] <= pos[:, None]).expand(2, SEQ, SEQ).clone()
    allowed[1, :, SEQ - 3 :] = False
    return (~allowed)[:, None].float() * fill


#: name -> family, target dtype, and the one cause (only in the target run): config, change, kernel, mask,
#: optimizer keyword arguments
SCENARIOS: Dict[str, Dict[str, Any]] = {
    "gpt2-kernel-addmm": dict(family=gpt2, dtype=torch.bfloat16, kernel=addmm_fault(3)),
    "neox-layernorm-eps": dict(family=neox, dtype=torch.bfloat16, change=layer_norm_eps),
    "neox-fast-gelu": dict(family=neox, dtype=torch.bfloat16, kernel=fast_gelu(1)),
    # positions from 1000 (a long context's tail): bf16 holds 1000..1007 as 1000 or 1008
    "qwen3-rope-bf16": dict(family=qwen3, dtype=torch.bfloat16, change=rope_in_bf16, positions=1000),
    # SGD: fp16 AdamW with eps 1e-8 makes NaN itself (eps and g**2 underflow), in the clean run too
    "phi3-fp32-min-mask": dict(family=phi3, dtype=torch.float16, mask=True, sgd=True),
    "phi3-resid-dropout": dict(family=phi3, dtype=torch.bfloat16, config=dict(resid_pdrop=0.1)),
    "phi-backward-mm": dict(family=phi, dtype=torch.bfloat16, kernel=mm_fault(5, "backward")),
    "stablelm-attention-dropout": dict(
        family=stablelm, dtype=torch.bfloat16, config=dict(attention_dropout=0.1)
    ),
    "llama-adamw-eps": dict(family=llama, dtype=torch.bfloat16, opt=dict(eps=1e-3)),
    "llama-stale-weight": dict(family=llama, dtype=torch.bfloat16, change=stale_weight),
}


def main(name: str, role: str) -> None:
    s = SCENARIOS[name]
    cause = role == "target"
    torch.manual_seed(0)
    model = s["family"](attn_implementation=ATTENTION, **(s.get("config", {}) if cause else {}))
    if cause and "change" in s:
        s["change"](model)
    if cause and "kernel" in s:
        s["kernel"]()
    dtype = torch.float32 if role == "ref" else s["dtype"]
    device = torch.device("cpu") if role == "ref" else DEVICE
    model.to(device=device, dtype=dtype)
    model.train()
    if s.get("sgd"):
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, foreach=False)
    else:
        opt = torch.optim.AdamW(
            model.parameters(), lr=1e-3, foreach=False, **(s.get("opt", {}) if cause else {})
        )
    if s.get("positions"):
        # model.to(bf16) rounded the inv_freq buffer (a drift of its own at position 1000): recompute it
        config, rotary = model.config, model.model.rotary_emb
        base = getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]
        dim = config.head_dim
        rotary.inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim)
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(1)).to(device)
    kwargs: Dict[str, Any] = {}
    if s.get(
        "mask"
    ):  # the user's own additive mask: -1e4 where masked, float32's min in the target (-inf in fp16)
        kwargs["attention_mask"] = padding_mask(torch.finfo(torch.float32).min if cause else -1e4).to(
            device, dtype
        )
    if s.get("positions"):
        kwargs["position_ids"] = torch.arange(s["positions"], s["positions"] + SEQ, device=device).expand(
            2, SEQ
        )
    torch.manual_seed(2)
    loss = model(input_ids=ids, labels=ids, **kwargs).loss
    loss.backward()
    opt.step()
    print(f"{name} {role} loss {loss.item():.6g}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
