"""Simulated profiles in exactly the on-disk format of docs/profile-format.md, with known ground truth.

:func:`write_profile` simulates N ranks running steps of compute segments, each followed by a collective,
and writes ``rank{r}/meta.json`` + ``events.jsonl`` (and ``hang/hang.json`` after a hang), and the columnar
files of the collectives where the profiler would have written them (``columnar_files=False``: none). What it
simulated comes back as a :class:`Truth`, so tests can check ``analyze`` against the simulation instead
of against its own output.

The timing model, in true (global) time: a rank arrives at a collective after its compute segment
(``compute`` + half-normal noise of scale ``jitter``, plus ``delay / collectives-in-step`` on the
straggler); a collective ends for everyone when the last rank of its group has arrived plus
``latency + S × factor / busbw`` (so the busbw is exactly ``busbw`` when ``latency`` is 0); each rank
sees the end a little later (half-normal, ``exit_jitter``). Every time a rank writes is its true time
plus its clock offset (``Truth.offsets``).
"""

import json
import os
from dataclasses import dataclass, field
from typing import IO, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import columnar
from .bandwidth import GB, P2P_OPS, bus_factor
from .recorder import SCHEMA

OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "barrier")
APIS = {
    "all_gather": "all_gather_into_tensor",
    "reduce_scatter": "reduce_scatter_tensor",
    "all_to_all": "all_to_all_single",
}
START = 1_700_000_000.0
HANG_TIMEOUT = 30.0
GIB = 1 << 30


@dataclass
class Event:
    """One collective in the schedule: ``group`` names its members (``"world"``, ``"tp"`` or ``"p2p"``)."""

    group: str
    op: str
    nbytes: int
    step: int


@dataclass
class Truth:
    """What was simulated. Times are true (offset-free) seconds."""

    ranks: int
    offsets: np.ndarray
    step_times: np.ndarray  # per step: end of the step on the slowest rank minus its start
    events: List[Event]
    bytes_by_op: Dict[str, int]  # sum over coll records written (every rank, every call)
    p2p_bytes: Dict[Tuple[int, int], int]  # (src, dst) -> bytes sent
    peak_allocated: np.ndarray  # per rank, of the samples written
    straggler: Optional[int] = None
    hang_seq: Optional[int] = None  # world-group seq of the collective the missing rank never entered
    hang_rank: Optional[int] = None
    cut_short: Optional[int] = None
    groups: Dict[str, List[int]] = field(default_factory=dict)


def schedule(collectives: int, per_step: int, tp: int, p2p: bool) -> List[Event]:
    """World collectives cycle through :data:`OPS` with sizes 1 KiB .. 16 MiB; each step may start with
    a ring send/recv and end with an all_reduce on each rank's tensor-parallel group."""
    events: List[Event] = []
    for i in range(collectives):
        step = i // per_step
        if p2p and i % per_step == 0:
            events += [Event("p2p", "send", 1 << 16, step), Event("p2p", "recv", 1 << 16, step)]
        op = OPS[i % len(OPS)]
        events.append(Event("world", op, 0 if op == "barrier" else 1 << (10 + (i // len(OPS)) % 15), step))
        if tp > 1 and (i % per_step == per_step - 1 or i == collectives - 1):
            events.append(Event("tp", "all_reduce", 1 << 20, step))
    return events


def _halfnormal(rng: np.random.Generator, scale: float, size: int) -> np.ndarray:
    return np.abs(rng.normal(0.0, scale, size)) if scale > 0 else np.zeros(size)


def write_profile(
    out_dir: str,
    ranks: int = 4,
    collectives: int = 200,
    per_step: int = 10,
    compute: float = 0.005,
    jitter: float = 0.001,
    straggler: Optional[int] = None,
    delay: float = 0.0,
    clock_skew: float = 0.0,
    hang_at: Optional[int] = None,
    hang_rank: int = 0,
    cut_short: Optional[int] = None,
    tp: int = 1,
    p2p: bool = False,
    busbw: float = 10.0,
    latency: float = 20e-6,
    exit_jitter: float = 20e-6,
    seed: int = 0,
    columnar_files: bool = True,
) -> Truth:
    """Write a simulated profile of ``ranks`` ranks × ``collectives`` world-group collectives to ``out_dir``.

    ``per_step`` collectives make a step. ``straggler`` arrives ``delay`` seconds per step late in total
    (spread over its collectives). ``clock_skew``: each rank's clock is off by a uniform offset in
    [-skew, skew] (rank 0 exact). ``hang_at``: the world-group seq at which ``hang_rank`` stops short; the
    other ranks enter it and never leave; every rank writes ``hang/hang.json`` and none closes its
    meta.json. ``cut_short``: that rank is killed halfway (last line half-written, meta.json not closed).
    ``tp`` > 1 adds an all_reduce per step on groups of ``tp`` consecutive ranks; ``p2p`` a ring
    send/recv per step. Deterministic for a given ``seed``.
    """
    if tp > 1 and ranks % tp:
        raise ValueError(f"tp={tp} does not divide ranks={ranks}")
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-clock_skew, clock_skew, ranks) if clock_skew else np.zeros(ranks)
    offsets[0] = 0.0
    events = schedule(collectives, per_step, tp, p2p)
    per_step_count = np.bincount([e.step for e in events])
    sim = _simulate(
        events, ranks, tp, compute, jitter, straggler, delay, per_step_count, busbw, latency, exit_jitter, rng
    )
    gids = {"world": "0", "p2p": "0"}
    seqs = _seqs(events)
    hang_seq = _hang_index(events, seqs, hang_at) if hang_at is not None else None
    writer = _Writer(
        out_dir, ranks, tp, events, seqs, gids, sim, offsets, hang_seq, hang_rank, cut_short, columnar_files
    )
    for r in range(ranks):
        writer.write_rank(r)
    return Truth(
        ranks=ranks,
        offsets=offsets,
        step_times=sim.step_times,
        events=events,
        bytes_by_op=writer.bytes_by_op,
        p2p_bytes=writer.p2p_bytes,
        peak_allocated=np.array(
            [max((writer.allocated(r, s) for s in writer.steps_written[r]), default=0) for r in range(ranks)]
        ),
        straggler=straggler,
        hang_seq=None if hang_seq is None else seqs[hang_seq],
        hang_rank=hang_rank if hang_seq is not None else None,
        cut_short=cut_short,
        groups=writer.groups,
    )


@dataclass
class _Sim:
    t0: np.ndarray  # events × ranks, true times
    t1: np.ndarray
    step_t0: np.ndarray  # steps × ranks
    step_t1: np.ndarray
    step_times: np.ndarray


def _simulate(
    events: Sequence[Event],
    ranks: int,
    tp: int,
    compute: float,
    jitter: float,
    straggler: Optional[int],
    delay: float,
    per_step_count: np.ndarray,
    busbw: float,
    latency: float,
    exit_jitter: float,
    rng: np.random.Generator,
) -> _Sim:
    t0 = np.empty((len(events), ranks))
    t1 = np.empty((len(events), ranks))
    steps = len(per_step_count)
    step_t0, step_t1 = np.empty((steps, ranks)), np.empty((steps, ranks))
    now = np.full(ranks, START)
    for i, ev in enumerate(events):
        if i == 0 or events[i - 1].step != ev.step:
            step_t0[ev.step] = now
        arrive = now + compute + _halfnormal(rng, jitter, ranks)
        if straggler is not None:
            arrive[straggler] += delay / per_step_count[ev.step]
        n = tp if ev.group == "tp" else ranks
        factor = bus_factor(ev.op, n)
        xfer = latency + (0.0 if np.isnan(factor) else ev.nbytes * factor / (busbw * GB))
        last = arrive.reshape(-1, tp).max(axis=1).repeat(tp) if ev.group == "tp" else arrive.max()
        t0[i] = arrive
        t1[i] = last + xfer + _halfnormal(rng, exit_jitter, ranks)
        now = t1[i]
        if i == len(events) - 1 or events[i + 1].step != ev.step:
            now = now + compute
            step_t1[ev.step] = now
    return _Sim(t0, t1, step_t0, step_t1, (step_t1 - step_t0).max(axis=1))


def _seqs(events: Sequence[Event]) -> List[int]:
    """Each event's seq on its group: the world group and p2p share gid "0" (one counter); tp groups count
    their own."""
    counters: Dict[str, int] = {}
    out = []
    for ev in events:
        key = "tp" if ev.group == "tp" else "0"
        out.append(counters.get(key, 0))
        counters[key] = out[-1] + 1
    return out


def _hang_index(events: Sequence[Event], seqs: Sequence[int], hang_at: int) -> int:
    """The first world-group collective at or after seq ``hang_at``."""
    for i, ev in enumerate(events):
        if ev.group == "world" and seqs[i] >= hang_at:
            return i
    raise ValueError(f"hang_at={hang_at}: no world-group collective that late")


class _Writer:
    """Turns the simulation into one rank's files."""

    def __init__(
        self,
        out_dir: str,
        ranks: int,
        tp: int,
        events: Sequence[Event],
        seqs: Sequence[int],
        gids: Dict[str, str],
        sim: _Sim,
        offsets: np.ndarray,
        hang_index: Optional[int],
        hang_rank: int,
        cut_short: Optional[int],
        columnar: bool,
    ) -> None:
        self.out_dir, self.ranks, self.tp, self.columnar = out_dir, ranks, tp, columnar
        self.events, self.seqs, self.gids, self.sim, self.offsets = events, seqs, gids, sim, offsets
        self.hang_index, self.hang_rank, self.cut_short = hang_index, hang_rank, cut_short
        self.bytes_by_op: Dict[str, int] = {}
        self.p2p_bytes: Dict[Tuple[int, int], int] = {}
        self.steps_written: Dict[int, List[int]] = {}
        self.groups: Dict[str, List[int]] = {"0": list(range(ranks))}
        if tp > 1:
            self.groups.update({f"tp{k}": list(range(k * tp, (k + 1) * tp)) for k in range(ranks // tp)})

    def tp_gid(self, rank: int) -> str:
        return f"tp{rank // self.tp}"

    @staticmethod
    def allocated(rank: int, step: int) -> int:
        """Device memory allocated at the end of ``step``: a saw-tooth over 5 steps, rising with the rank."""
        return GIB + (step % 5) * (100 << 20) + rank * (10 << 20)

    def _last_event(self, rank: int) -> int:
        """Index of the first event this rank does not complete."""
        if self.cut_short == rank:
            return len(self.events) // 2
        if self.hang_index is not None:
            return self.hang_index
        return len(self.events)

    def write_rank(self, rank: int) -> None:
        rdir = os.path.join(self.out_dir, f"rank{rank}")
        os.makedirs(rdir, exist_ok=True)
        off = self.offsets[rank]
        end = self._last_event(rank)
        lines = [json.dumps({"k": "group", "gid": "0", "ranks": self.groups["0"], "backend": "gloo"})]
        if self.tp > 1:
            gid = self.tp_gid(rank)
            lines.append(json.dumps({"k": "group", "gid": gid, "ranks": self.groups[gid], "backend": "gloo"}))
        lines.append(
            json.dumps(
                {"k": "stack", "sid": 0, "frames": ["train.py:40 in <module>", "train.py:22 in train_step"]}
            )
        )
        steps_done: List[int] = []
        colls = columnar.Writer()  # as the recorder: a file every columnar.ROWS records, the rest at close
        step_colls = []

        def open_file(name: str) -> IO[bytes]:
            return open(os.path.join(rdir, name), "wb")

        size = sum(map(len, lines)) + len(lines)  # of the lines so far and their newlines, in bytes
        for i in range(end):
            ev = self.events[i]
            step_colls.append(self._record(rank, i, off))
            lines.append(self._coll_line(step_colls[-1], rank, i))
            size += len(lines[-1]) + 1
            if i == len(self.events) - 1 or self.events[i + 1].step != ev.step:
                lines += self._step_lines(rank, ev.step, off)
                size += len(lines[-1]) + len(lines[-2]) + 2
                steps_done.append(ev.step)
                if self.columnar:  # the writer thread's flush at the step boundary
                    colls.add(step_colls, (len(lines) + 1, size), open_file)
                step_colls = []
        self.steps_written[rank] = steps_done
        text = "\n".join(lines) + "\n"
        if self.cut_short == rank:  # killed mid-write: half a line, no newline
            text += self._coll_line(self._record(rank, end, off), rank, end)[:40]
        with open(os.path.join(rdir, "events.jsonl"), "w", encoding="utf-8") as f:
            f.write(text)
        closed = self.cut_short != rank and self.hang_index is None
        if closed and self.columnar:
            colls.add(step_colls, (len(lines) + 1, size), open_file)
            colls.close((len(lines) + 1, size), open_file)
        meta = {
            "schema": SCHEMA,
            "rank": rank,
            "world_size": self.ranks,
            "local_rank": rank % 8,
            "hostname": f"node-{rank // 8}",
            "pid": 1000 + rank,
            "backend": "cpu",
            "dist_backend": "gloo",
            "device_name": "simulated",
            "versions": {"python": "3.11", "torch": "2.13.0", "torch_npu": None},
            "options": {
                "comm": True,
                "memory": True,
                "memory_interval": 0.5,
                "hang_timeout": HANG_TIMEOUT,
                "stack": True,
            },
            "started_at": START + off,
        }
        if closed:
            meta.update(
                closed_at=float(self.sim.t1[-1].max()) + 1.0 + off,
                records=len(lines),
                dropped=0,
                internal_errors=0,
            )
        with open(os.path.join(rdir, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        if self.hang_index is not None:
            self._write_hang(rdir, rank, off)

    def _record(self, rank: int, i: int, off: float) -> Dict[str, object]:
        ev = self.events[i]
        gid = self.tp_gid(rank) if ev.group == "tp" else "0"
        n = self.tp if ev.group == "tp" else self.ranks
        peer = None
        if ev.op in P2P_OPS:
            peer = (rank + 1) % self.ranks if ev.op == "send" else (rank - 1) % self.ranks
        return {
            "k": "coll",
            "gid": gid,
            "seq": self.seqs[i],
            "op": ev.op,
            "api": APIS.get(ev.op, ev.op),
            "dtype": None if ev.op == "barrier" else "float32",
            "bytes": ev.nbytes,
            "n": n,
            "peer": peer,
            "t0": float(self.sim.t0[i, rank] + off),
            "t1": float(self.sim.t1[i, rank] + off),
            "dev_ms": None,
            "async": False,
            "step": ev.step,
            "sid": 0,
            "via": None,
        }

    def _coll_line(self, rec: Dict[str, object], rank: int, i: int) -> str:
        """``rec``, the record of event ``i``, as a line, counted in the truth when the rank completed it."""
        ev = self.events[i]
        if i < self._last_event(rank):
            self.bytes_by_op[ev.op] = self.bytes_by_op.get(ev.op, 0) + ev.nbytes
            if ev.op == "send":
                key = (rank, (rank + 1) % self.ranks)
                self.p2p_bytes[key] = self.p2p_bytes.get(key, 0) + ev.nbytes
        return json.dumps(rec)

    def _step_lines(self, rank: int, step: int, off: float) -> List[str]:
        t0 = float(self.sim.step_t0[step, rank] + off)
        t1 = float(self.sim.step_t1[step, rank] + off)
        alloc = self.allocated(rank, step)
        mem = {
            "k": "mem",
            "t": t1,
            "step": step,
            "dev": {
                "allocated_bytes": alloc,
                "reserved_bytes": 2 * GIB,
                "active_bytes": alloc,
                "num_alloc_retries": 0,
                "num_ooms": 0,
            },
            "host": {"rss": (2 * GIB) + rank * (1 << 20), "uss": (2 * GIB) - (1 << 24)},
        }
        return [json.dumps({"k": "step", "step": step, "t0": t0, "t1": t1}), json.dumps(mem)]

    def _write_hang(self, rdir: str, rank: int, off: float) -> None:
        assert self.hang_index is not None
        hdir = os.path.join(rdir, "hang")
        os.makedirs(hdir, exist_ok=True)
        entered = rank != self.hang_rank
        first_t0 = float(self.sim.t0[self.hang_index].min())
        inflight = []
        if entered:
            rec = self._record(rank, self.hang_index, off)
            inflight.append({k: rec[k] for k in ("gid", "seq", "op", "api", "t0", "bytes", "n", "step")})
            inflight[0]["ranks"] = self.groups["0"]
        recent = [self._record(rank, i, off) for i in range(max(0, self.hang_index - 8), self.hang_index)]
        doc = {
            "rank": rank,
            "trigger": "self" if entered else "peer",
            "detected_at": first_t0 + HANG_TIMEOUT + off,
            "inflight": inflight,
            "recent": recent,
            "files": {"pyspy": "pyspy.json", "faulthandler": "faulthandler.txt"},
        }
        with open(os.path.join(hdir, "hang.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
