"""Which ops return a view of an input, read from the op's schema rather than from a list of names.

An ATen schema marks a return that aliases an argument with an alias set (``view(Tensor(a) self, ...)
-> Tensor(a)``); an in-place op's return is marked as written too (``Tensor(a!)``), and is not a view in
this sense: it holds new values. For a view, capture (``capture_session.py``) computes no statistics when it is
made:

- a view with as many elements as the tensor it views (``view``, ``t``, ``transpose``, ``permute``,
  ``(un)squeeze``, ``detach``, ``alias``, an ``expand`` that expands nothing) holds the same elements in
  another shape or order: it shares that tensor's statistics (:func:`same_elements`);
- any other view (``slice``, ``select``, ``expand``, ``split``/``unbind`` outputs, ``diagonal``,
  ``as_strided``, ``unfold``) is a subset or a repetition of the elements: its record has dtype and shape
  only, and its statistics are computed where a later op reads it as an input, if one does.

``as_strided`` and ``unfold`` can repeat elements without changing their number, so they never share
statistics. A few ops copy values without an alias annotation: :data:`COPIES` (``clone``,
``contiguous``, ``_unsafe_view``, ``lift_fresh``) share their input's statistics too.
"""

import math
from typing import Any, Sequence

COPIES = frozenset({"aten::clone", "aten::contiguous", "aten::_unsafe_view", "aten::lift_fresh"})
# views that can hold an element more than once with the input's number of elements
_REARRANGING = frozenset({"as_strided", "unfold", "as_strided_copy"})
#: views that usually hold a part of their input (by op base name, ``op_names.op_base``): a bucket, a cache or a
#: flat buffer sliced for one tensor (DeepSpeed ZeRO's 500M-element gradient bucket, a preallocated KV cache)
SUBSET_VIEWS = frozenset(
    {
        "slice",
        "narrow",
        "select",
        "split",
        "split_with_sizes",
        "unbind",
        "diagonal",
        "as_strided",
        "unfold",
        "chunk",
    }
)


def returns_view(func: Any) -> bool:
    """Whether ``func``'s first return aliases an argument without writing it (a view op)."""
    try:
        returns = func._schema.returns
    except AttributeError:  # not an OpOverload (a Python-only op): no schema to read
        return False
    if not returns:
        return False
    info = returns[0].alias_info
    return info is not None and not info.is_write


def may_share(name: str) -> bool:
    """Whether a view op named ``name`` (``aten::expand``) may share its input's statistics: not one that
    can repeat elements (see :func:`same_elements`)."""
    return name.split("::")[-1].split(".")[0] not in _REARRANGING


def same_elements(numel: int, source_shape: Sequence[int]) -> bool:
    """A view of a tensor of ``source_shape`` holding ``numel`` elements holds all of them, once each."""
    return numel == math.prod(source_shape)
