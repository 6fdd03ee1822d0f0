"""torchtune in the check-ops child: the scaled RoPE caches of Llama 3.1+/Llama 4 are built on meta.

``Llama3ScaledRoPE.rope_init`` (and Llama 4's) returns without a cache when its frequencies are on meta:
the distributed recipes build the model on meta and call ``rope_init()`` again once the weights are real.
A single-device recipe builds the model on the accelerator, where the cache is built at once; on the fake
node that device is meta, so the cache never would be and the first forward raises "RoPE cache is not
built". Here a ``rope_init`` that left no cache builds it on meta: a ``theta`` of ``dim // 2`` frequencies
(float32, as the real one; the scaling only changes values) and ``build_rope_cache(max_seq_len)``.
"""

from typing import Any, Callable

import torch

from . import patch_on_import

#: the modules of the RoPE classes whose ``rope_init`` skips meta, and the class names
MODULES = {
    "torchtune.models.llama3_1._position_embeddings": "Llama3ScaledRoPE",
    "torchtune.models.llama4._position_embeddings": "Llama4ScaledRoPE",
}


def _rope_init_on_meta(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def rope_init(self: Any) -> None:
        original(self)
        if not self.is_cache_built:  # it returned early: the frequencies were on meta
            self.register_buffer("theta", torch.empty(self.dim // 2, dtype=torch.float32), persistent=False)
            self.build_rope_cache(self.max_seq_len)
            self.is_cache_built = True

    rope_init.__wrapped__ = original  # type: ignore[attr-defined]
    return rope_init


def _patch(module: Any) -> None:
    cls = getattr(module, MODULES[module.__name__], None)
    if cls is not None and hasattr(cls, "rope_init"):
        cls.rope_init = _rope_init_on_meta(cls.rope_init)


def install() -> None:
    patch_on_import.install(dict.fromkeys(MODULES, _patch))
