"""Types of the compiled module _pair_sums.c (see its header comment)."""

from typing import Optional, Tuple

def pair_sums(
    t_address: int, t_kind: int, r_address: int, r_kind: int, n: int, emin: int, emax: int, floor: float
) -> Optional[
    Tuple[
        int, int, int, int, float, float, float, float, float, float, float, float, float, float, float, float
    ]
]: ...
def sum_squares(address: int, kind: int, n: int) -> Optional[float]: ...
def max_ulp(
    t_address: int, t_kind: int, r_address: int, r_kind: int, n: int, low: float, high: float
) -> Optional[float]: ...
def max_ulp_f64(
    t_address: int, t_kind: int, r_address: int, n: int, low: float, high: float
) -> Optional[float]: ...
