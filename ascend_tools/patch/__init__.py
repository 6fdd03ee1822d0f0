"""``import ascend_tools.patch``: fused RMSNorm, RoPE and attention for Hugging Face models.

Importing it (before building the model) patches every supported family this transformers has
(``hf.FAMILIES``): each family's RMSNorm ``forward`` and ``apply_rotary_pos_emb`` in its own modeling
module, and an ``"ascend_fused"`` attention registered with both ``AttentionInterface`` and
``AttentionMaskInterface`` that models of those families use unless the user chose another
``attn_implementation``. The ops pick their tier (reference / npu / triton / ascendc) and self-check it
in ``ascend_tools/ops/registry.py``.

- ``apply(model)`` patches an already-built model in place; ``revert(model=None)`` undoes;
  ``status()`` says what is patched and with which tier (``ascend-doctor patch-status`` prints it).
- ``ASCEND_TOOLS_PATCH=0`` makes the import a no-op; ``ASCEND_TOOLS_PATCH_OPS=rms_norm,rope`` chooses
  the ops (default: ``rms_norm,rope,attention``); ``ASCEND_TOOLS_KERNEL_<OP>`` forces a tier.
- Idempotent, and fails open: a family that cannot be patched is logged once and left as is.
"""

import logging
import os

from .hf import (
    FAMILIES,
    PATCH_FUNCTIONS,
    Family,
    apply,
    ops_from_env,
    patch_all,
    patch_family,
    revert,
    status,
)

__all__ = [
    "FAMILIES",
    "PATCH_FUNCTIONS",
    "Family",
    "apply",
    "enabled",
    "patch_all",
    "patch_family",
    "revert",
    "status",
]

log = logging.getLogger("ascend_tools")


def enabled() -> bool:
    """False when ``ASCEND_TOOLS_PATCH`` is 0/false/no/off."""
    return os.environ.get("ASCEND_TOOLS_PATCH", "1").strip().lower() not in ("0", "false", "no", "off")


def _patch_on_import() -> None:
    if not enabled():
        log.debug("ascend_tools.patch: ASCEND_TOOLS_PATCH=0, nothing patched")
        return
    try:
        import transformers  # noqa: F401
    except ImportError:
        log.info("ascend_tools.patch: transformers is not installed; nothing to patch")
        return
    patch_all(ops_from_env())


_patch_on_import()
