"""The ``<Family>ForCausalLM.forward`` that trains without the full logits (fused linear cross-entropy).

When the model is training and gets ``labels`` (HF ``Trainer``, Accelerate and plain loops alike), the
patched forward runs HF's own forward with ``labels=None`` while ``lm_head`` is swapped, for that call only,
for a recorder that keeps its input (the final hidden states) and returns a zero-stride placeholder instead
of the ``tokens x vocab`` logits; the loss is then :func:`ascend_tools.ops.linear_cross_entropy` of those
hidden states with the head's weight and bias, the labels shifted as HF's ``ForCausalLMLoss`` shifts them
(or HF's ``shift_labels`` when given), ``num_items_in_batch`` when the trainer passes it, and the config's
``final_logit_softcapping`` (Gemma 2/3; cleared for the call so HF does not apply it to the placeholder) and
``logits_scaling`` (Granite divides its logits by it: the hidden states are divided instead).
The output is HF's output with that loss and ``logits=None`` (as Liger-Kernel's fused forward returns), plus,
for a mixture of experts asked for its router logits, the load-balancing loss HF adds to a loss it computes
(``router_aux_loss_coef * aux_loss``); a tuple where the caller asked for one (``return_dict=False``), made from
that output as HF makes its own (fields that are None left out).

Wrapping HF's forward instead of rewriting it keeps every version's argument names (``past_key_values`` in
4.x, ``cache`` in 5.x), caches and outputs. Everything else (eval, ``generate``, no labels, labels passed
positionally) runs HF's forward unchanged, logits included. Limit: the head's parameters are read directly,
so a head sharded by FSDP or ZeRO-3 outside its own forward, or quantized, is not fused (HF's forward runs there:
see :func:`_fusable`).
"""

import functools
from typing import Any, Callable, Dict, Optional

import torch


class _HiddenRecorder(torch.nn.Module):
    """Stands in for ``lm_head`` during one forward: keeps its input, returns a zero-stride placeholder."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.hidden: Optional[torch.Tensor] = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self.hidden = hidden
        return hidden.new_zeros(()).expand(*hidden.shape[:-1], self.vocab)


def _shifted(labels: torch.Tensor, kwargs: Dict[str, Any], ignore_index: int) -> torch.Tensor:
    shift = kwargs.get("shift_labels")
    if shift is None:
        shift = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    return shift.reshape(-1)


def _fusable(model: Any, labels: Any) -> bool:
    """Training with labels, and a head whose weight is its plain floating ``(out_features, in_features)`` matrix:
    not a ZeRO-3 or FSDP shard outside its forward (FSDP2 with the head as a unit of its own, as torchtitan shards
    its output layer: a sharded ``DTensor`` of the global shape until the head's own forward gathers it; the
    swapped-out head never runs), nor a bitsandbytes ``Linear4bit``/``Linear8bitLt`` (subclasses of ``nn.Linear``
    whose weight is packed 4-bit codes, ``(out * in / 2, 1)`` uint8, or int8; transformers quantizes the head where
    ``llm_int8_skip_modules`` is given without it, as MoE QLoRA recipes give their routers)."""
    head = getattr(model, "lm_head", None)
    weight: Any = getattr(head, "weight", None)
    return (
        labels is not None
        and model.training
        and torch.is_grad_enabled()
        and isinstance(head, torch.nn.Linear)
        and type(weight) in (torch.Tensor, torch.nn.Parameter)  # no tensor subclass (DTensor, Params4bit)
        and weight.is_floating_point()
        and tuple(weight.shape) == (head.out_features, head.in_features)
        and head.in_features > 0
    )


def _returns_dict(config: Any) -> bool:
    """HF's default for ``return_dict``: the config's, unless torchscript (4.x ``use_return_dict``, which 5.x
    deprecates with a warning on every read)."""
    return bool(getattr(config, "return_dict", True)) and not getattr(config, "torchscript", False)


def make_causal_lm_forward(
    original: Callable[..., Any], linear_cross_entropy: Callable[..., Any], ignore_index: int = -100
) -> Callable[..., Any]:
    # HF's signature is part of the contract: ``generate`` passes ``logits_to_keep`` and builds
    # ``position_ids`` only when ``inspect.signature(model.forward)`` names them (4.x Phi-3 otherwise passes
    # ``logits_to_keep=None``, which slices the hidden states to 4-D), and ``Trainer`` keeps only the dataset
    # columns it names.
    @functools.wraps(original)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        labels = kwargs.get("labels")
        if labels is None or not _fusable(self, labels):
            return original(self, *args, **kwargs)
        head = self.lm_head
        recorder = _HiddenRecorder(head.weight.shape[0])
        softcap = getattr(self.config, "final_logit_softcapping", None)
        asked = kwargs.get("return_dict")
        wants_tuple = (asked if asked is not None else _returns_dict(self.config)) is False
        kwargs["labels"] = None
        kwargs["return_dict"] = True  # fields by name (a tuple leaves out the None ones: no fixed places)
        self._modules["lm_head"] = recorder
        try:
            if softcap is not None:
                self.config.final_logit_softcapping = None
            out = original(self, *args, **kwargs)
        finally:
            self._modules["lm_head"] = head
            if softcap is not None:
                self.config.final_logit_softcapping = softcap
        hidden = recorder.hidden
        scale = getattr(self.config, "logits_scaling", None) or 1.0  # Granite: logits = lm_head(h) / scaling
        # nothing to fuse, or not as one product
        if hidden is None or (scale != 1.0 and head.bias is not None):
            return original(self, *args, **dict(kwargs, labels=labels, return_dict=asked))
        if scale != 1.0:
            hidden = hidden / scale  # (h W^T) / s = (h / s) W^T with no bias
        loss = linear_cross_entropy(
            hidden.reshape(-1, hidden.shape[-1]),
            head.weight,
            _shifted(labels, kwargs, ignore_index).to(hidden.device),
            head.bias,
            ignore_index=ignore_index,
            softcap=softcap,
            num_items_in_batch=kwargs.get("num_items_in_batch"),
        )
        fields = {k: v for k, v in out.items() if k not in ("loss", "logits")}
        aux = fields.get("aux_loss")
        coef = getattr(self, "router_aux_loss_coef", None)
        if aux is not None and coef:
            # MoE (Mixtral, Qwen-MoE) with output_router_logits: HF adds the router's load-balancing loss to the
            # loss only where it computed the loss itself (labels given)
            loss = loss + coef * aux.to(loss.device)
        result = type(out)(loss=loss, logits=None, **fields)
        return result.to_tuple() if wants_tuple else result

    return forward
