"""The merged profile every analysis reads: compact numpy columns for all ranks' records, plus what was
learnt about each rank. Built by :func:`reader.read_profile`; no analysis holds records as dicts."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .memory import RankMemory

#: int32 (codes, ranks and counters: 16 M records at 8,192 ranks, 64 MB a column instead of 131 MB; the reader
#: keeps a column int64 only when a value does not fit); ``bytes`` int64, times float64 (epoch seconds
#: to the microsecond need float64's 53 bits: float32 would keep 2 minutes' resolution)
COLL_INT_COLUMNS = ("rank", "gid", "op", "seq", "n", "peer", "step", "sid")
COLL_FLOAT_COLUMNS = ("t0", "t1", "dev_ms")


@dataclass
class Colls:
    """One row per ``coll`` record of every rank, rank after rank (each rank's rows one run, in the order
    they were written). ``gid`` and ``op`` index :attr:`Profile.gids` and :attr:`Profile.ops`; a missing
    ``peer``/``step``/``sid`` is -1, a missing ``dev_ms`` NaN."""

    rank: np.ndarray
    gid: np.ndarray
    op: np.ndarray
    seq: np.ndarray
    bytes: np.ndarray
    n: np.ndarray
    peer: np.ndarray
    step: np.ndarray
    sid: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    dev_ms: np.ndarray
    is_async: np.ndarray

    @classmethod
    def empty(cls) -> "Colls":
        cols: Dict[str, np.ndarray] = {c: np.zeros(0, np.int32) for c in COLL_INT_COLUMNS}
        cols.update({c: np.zeros(0) for c in COLL_FLOAT_COLUMNS})
        return cls(bytes=np.zeros(0, np.int64), is_async=np.zeros(0, bool), **cols)

    @classmethod
    def concat(cls, parts: List["Colls"]) -> "Colls":
        if not parts:
            return cls.empty()
        return cls(
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__}
        )

    def __len__(self) -> int:
        return len(self.t0)


@dataclass
class Steps:
    """One row per ``step`` record of every rank."""

    rank: np.ndarray
    step: np.ndarray
    t0: np.ndarray
    t1: np.ndarray

    @classmethod
    def concat(cls, parts: List["Steps"]) -> "Steps":
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        return cls(
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__}
        )

    def __len__(self) -> int:
        return len(self.t0)


@dataclass
class Problem:
    """Something wrong with the files (never fatal): ``severity`` is ``error``, ``warning`` or ``info``."""

    severity: str
    where: str
    message: str
    rank: Optional[int] = None


@dataclass
class RankInfo:
    """What one rank's directory told us besides its coll/step rows."""

    rank: int
    path: str
    meta: Dict[str, Any] = field(default_factory=dict)
    present: bool = True  # False: no rank directory at all
    closed: bool = False  # meta.json has closed_at (the rank exited normally)
    records: int = 0
    stacks: Dict[int, List[str]] = field(default_factory=dict)
    last_step: Optional[int] = None
    memory: Optional[RankMemory] = None
    hang: Optional[Dict[str, Any]] = None  # hang/hang.json, normalised (see reader.normalise_hang)
    hang_files: List[str] = field(default_factory=list)
    oom: Optional[Dict[str, Any]] = None
    windows: List[Dict[str, Any]] = field(default_factory=list)  # always-on ``window`` records, by "w"

    @property
    def host(self) -> str:
        return str(self.meta.get("hostname") or "?")


@dataclass
class Profile:
    """Every rank of one profile directory, merged. Times are host seconds on each rank's own clock until
    :func:`clocks.align` moves them onto the reference rank's clock."""

    path: str
    world_size: int
    ranks: Dict[int, RankInfo]
    gids: List[str]
    ops: List[str]
    groups: Dict[str, List[int]]  # gid -> global ranks, in group-rank order
    colls: Colls
    steps: Steps
    problems: List[Problem]
    offsets: Optional[np.ndarray] = None  # per rank (index = rank), set by clocks.align

    def gid_code(self, gid: str) -> int:
        return self.gids.index(gid)

    def op_code(self, op: str) -> int:
        return self.ops.index(op) if op in self.ops else -1
