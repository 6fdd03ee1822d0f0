"""``save_image``: writes the tensor with ``torch.save`` (no image library here) to the path given."""

from typing import Any


def save_image(tensor: Any, fp: Any, **_kwargs: Any) -> None:
    import torch

    torch.save(tensor.detach().cpu(), fp)
