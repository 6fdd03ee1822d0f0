"""The SwiGLU MLP forward patched into HF's ``<Family>MLP`` classes: ``down(swiglu(gate(x), up(x)))``.

HF's MLPs compute ``down_proj(act_fn(gate_proj(x)) * up_proj(x))`` (Phi-3: one ``gate_up_proj`` whose output
is split in two). Only a SiLU activation is a SwiGLU: a model whose ``hidden_act`` is anything else (Gemma's
``gelu_pytorch_tanh``, a user's config) runs HF's own forward, decided per call from the module's activation.
"""

from typing import Any, Callable

SILU_ACTIVATIONS = ("SiLU", "SiLUActivation")  # torch.nn.SiLU ("swish", 4.x "silu"), transformers 5's "silu"


def is_silu(act: Any) -> bool:
    return type(act).__name__ in SILU_ACTIVATIONS


def make_mlp_forward(original: Callable[..., Any], swiglu: Callable[..., Any]) -> Callable[..., Any]:
    """``forward(self, x)`` for a gate/up/down MLP; ``original`` runs where the activation is not SiLU."""

    def forward(self: Any, x: Any) -> Any:
        if not is_silu(getattr(self, "act_fn", None)):
            return original(self, x)
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))

    return forward


def make_fused_mlp_forward(original: Callable[..., Any], swiglu: Callable[..., Any]) -> Callable[..., Any]:
    """``forward(self, x)`` for a fused ``gate_up_proj`` MLP (Phi-3: gate is the first half)."""

    def forward(self: Any, x: Any) -> Any:
        if not is_silu(getattr(self, "activation_fn", None)):
            return original(self, x)
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(swiglu(gate, up))

    return forward


def make_w123_mlp_forward(original: Callable[..., Any], swiglu: Callable[..., Any]) -> Callable[..., Any]:
    """``forward(self, x)`` for transformers 4.x's Mixtral expert (``w2(act(w1(x)) * w3(x))``)."""

    def forward(self: Any, x: Any) -> Any:
        if not is_silu(getattr(self, "act_fn", None)):
            return original(self, x)
        return self.w2(swiglu(self.w1(x), self.w3(x)))

    return forward


def make_experts_apply_gate(original: Callable[..., Any], swiglu: Callable[..., Any]) -> Callable[..., Any]:
    """``_apply_gate(self, gate_up_out)`` for transformers 5's fused ``<Family>Experts`` (3-D ``gate_up_proj``).

    It is the hook transformers' ``grouped_mm`` and ``batched_mm`` expert implementations (the default) call
    on each group's ``gate_up`` output, gate the first half as in ``_default_apply_gate``; routing, the
    per-expert GEMMs and the weighted sum stay HF's. The ``eager`` implementation computes the activation
    inline and is not reached by this hook."""

    def _apply_gate(self: Any, gate_up_out: Any) -> Any:
        if not is_silu(getattr(self, "act_fn", None)):
            return original(self, gate_up_out)
        gate, up = gate_up_out.chunk(2, dim=-1)
        return swiglu(gate, up)

    return _apply_gate
