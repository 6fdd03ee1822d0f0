"""tensor_entry.place: two tensors get the same place exactly when they hold the same set of elements (a capture
shares statistics between them), checked against the element offsets each view reads, enumerated."""

import itertools

import pytest
import torch

from ascend_tools.precision.tensor_entry import place

BASE = torch.randn(4096)


def _offsets(t: torch.Tensor) -> frozenset:
    """Every element's offset from the base storage's start, and the dtype: what the tensor holds."""
    start = (t.data_ptr() - BASE.data_ptr()) // t.element_size()
    ranges = [range(n) for n in t.shape]
    return frozenset(
        start + sum(i * s for i, s in zip(index, t.stride())) for index in itertools.product(*ranges)
    ) | {("dtype", t.dtype)}


def _views():
    a = BASE[:768].view(4, 12, 16)
    return [
        a,
        a.transpose(0, 2),
        a.permute(1, 2, 0),
        a.reshape(48, 16),
        a.reshape(768),
        a.unsqueeze(1),
        a[:, :6],  # rows of a slice: not one block
        a[:2],  # the first half: a block of its own
        a[:2].transpose(0, 1),
        a[:, :, :8],
        a[:, :, :8].transpose(1, 2),
        a[:, :1].expand(4, 12, 16),  # repeated
        a[::2],
        BASE[1:769].view(4, 12, 16),  # same count, shifted
        BASE[:384],
        BASE[:768].view(torch.int32),  # same bytes, another dtype
        BASE[:1].view(1, 1),
        BASE[:1],
    ]


@pytest.mark.parametrize("i, j", list(itertools.combinations(range(len(_views())), 2)))
def test_the_same_place_is_the_same_elements(i, j):
    views = _views()
    a, b = views[i], views[j]
    assert (place(a) == place(b)) == (_offsets(a) == _offsets(b)), (i, j, place(a), place(b))
