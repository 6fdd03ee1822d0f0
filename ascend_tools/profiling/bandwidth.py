"""Algorithm and bus bandwidth of a collective, as nccl-tests defines them (GB = 1e9 bytes).

``algbw = S / t``; ``busbw = algbw × factor(op, n)``, where S is the byte count the profile records
(docs/profile-format.md: the tensor for all_reduce, broadcast, reduce, send/recv; the full output for
all_gather and gather; the full input for reduce_scatter, scatter and all_to_all) and n the group size.

The factors are those of NVIDIA/nccl-tests ``doc/PERFORMANCE.md`` ("Summary": AllReduce 2(n-1)/n,
ReduceScatter, AllGather and AlltoAll (n-1)/n, Broadcast and Reduce 1). PERFORMANCE.md does not list
Gather, Scatter and SendRecv; their factors come from the tests' own code: ``src/gather.cu`` and
``src/scatter.cu`` (``GatherGetBw``/``ScatterGetBw``: S = count × nranks × typesize, factor (n-1)/n, the
same convention as AllGather/ReduceScatter) and ``src/sendrecv.cu`` (``SendRecvGetBw``: factor 1). A
barrier moves no data: it has no bandwidth (NaN), and neither has an op this table does not know.

Each factor is ``a × (n-1)/n + b``, so one ``(a, b)`` pair per op serves scalars and numpy arrays alike.
"""

import math
from typing import Dict, Sequence, Tuple, Union

import numpy as np

GB = 1e9

# op -> (a, b): factor = a * (n - 1) / n + b
FACTORS: Dict[str, Tuple[float, float]] = {
    "all_reduce": (2.0, 0.0),
    "all_gather": (1.0, 0.0),
    "reduce_scatter": (1.0, 0.0),
    "all_to_all": (1.0, 0.0),
    "gather": (1.0, 0.0),
    "scatter": (1.0, 0.0),
    "broadcast": (0.0, 1.0),
    "reduce": (0.0, 1.0),
    "send": (0.0, 1.0),
    "recv": (0.0, 1.0),
}
P2P_OPS = ("send", "recv")
# Ops after which no rank can leave before every rank of the group has arrived: their exit times
# coincide across ranks (clock alignment) and a late arriver delays everyone (wait, slow rank).
ALL_TO_ALL_DEPENDENT = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "barrier")

Number = Union[float, np.ndarray]


def bus_factor(op: str, n: Number) -> Number:
    """nccl-tests' busbw/algbw ratio for ``op`` on a group of ``n`` ranks (NaN for barrier or an unknown op)."""
    a, b = FACTORS.get(op, (math.nan, math.nan))
    return a * (n - 1) / n + b


def algbw(nbytes: Number, seconds: Number) -> Number:
    """S / t in GB/s."""
    return nbytes / seconds / GB


def busbw(op: str, nbytes: Number, seconds: Number, n: Number) -> Number:
    """algbw × :func:`bus_factor` in GB/s."""
    return algbw(nbytes, seconds) * bus_factor(op, n)


def bus_factors(op_names: Sequence[str], ops: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Vectorised :func:`bus_factor`: ``ops`` are indices into ``op_names``, ``n`` the group sizes."""
    ab = np.array([FACTORS.get(name, (math.nan, math.nan)) for name in op_names], dtype=float).reshape(-1, 2)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ab[ops, 0] * (n - 1) / n + ab[ops, 1]
