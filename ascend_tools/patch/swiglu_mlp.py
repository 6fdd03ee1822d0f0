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
