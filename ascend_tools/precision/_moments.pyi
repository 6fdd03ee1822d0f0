"""Types of the compiled module _moments.c (see its header comment)."""

from typing import Optional, Sequence, Tuple

def moments(
    address: int, kind: int, sizes: Sequence[int], strides: Sequence[int], capacity: int
) -> Optional[Tuple[float, float, float, float]]: ...
def portable_moments(
    address: int, kind: int, sizes: Sequence[int], strides: Sequence[int], capacity: int
) -> Optional[Tuple[float, float, float, float]]: ...
def simd() -> bool: ...
def stats_body(
    address: int, kind: int, sizes: Sequence[int], strides: Sequence[int], capacity: int
) -> Optional[str]: ...
