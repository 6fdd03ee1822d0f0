"""``torch.load(f, map_location="cuda")`` in the check-ops child: loaded onto the fake accelerator (meta).

torch restores each storage onto the map_location device itself, through ``torch.cuda``'s device guard,
which a CPU-only torch refuses ("compiled without CUDA support") and which the fake node's function mode
does not see. A map_location naming the accelerator (``"cuda"``, ``"cuda:1"``, a ``torch.device``, an
index) loads on the host, then moves the tensors to meta, as ``.to("cuda")`` does on the fake node.
"""

import functools
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_map

from .fake_accelerator import META, is_accelerator


def _onto_the_accelerator(load: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(load)
    def torch_load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not is_accelerator(map_location):
            return load(f, map_location, *args, **kwargs)
        loaded = load(f, "cpu", *args, **kwargs)
        return tree_map(lambda x: x.to(META) if isinstance(x, torch.Tensor) else x, loaded)

    return torch_load


def install() -> None:
    torch.load = _onto_the_accelerator(torch.load)
