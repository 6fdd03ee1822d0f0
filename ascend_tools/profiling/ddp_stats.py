"""DDP's own C++ timers, read once a step: how the always-on mode times DDP without a Python comm hook.

A Python comm hook costs DDP ~60 µs a bucket, plus a division pass over each bucket on ≥ 2 ranks (DDP's
C++ path divides while copying gradients into the bucket): 3–4% of a step with 1 MiB buckets, more than
the 1% always-on may cost (docs/profiling.md, "Always on"). DDP's reducer times every iteration it samples
(``Reducer`` timers: host clock on CPU, events on an accelerator) and its logger exposes the last sampled
iteration through ``DistributedDataParallel._get_ddp_logging_data()`` (~9 µs a read). Per iteration:

* ``fwd``: forward compute (DDP's forward call);
* ``bwd``: backward compute, from the start of backward to the last gradient ready;
* ``comm``: from the first bucket all-reduce launched to the last one done: a fast rank's waiting for a
  late one is in it, the late rank's is not;
* ``overlap``: the part of ``comm`` that ran while backward computed.

The sample rate is set to :data:`SAMPLE_RATE_CPU` on CPU; on an accelerator DDP waits for the sampled
iteration's events at the next forward, so only 1 in :data:`SAMPLE_RATE_DEVICE` iterations is sampled.
DDP's own rate (1 in 100) is set back when the profiler stops.
"""

import weakref
from typing import Any, Callable, Dict, List, Optional

SAMPLE_RATE_CPU = 1
SAMPLE_RATE_DEVICE = 10
SAMPLE_RATE_DDP = 100  # DDP's own (kDDPRuntimeLoggingSampleRate), given back when the profiler stops
NS = 1e-9
FIELDS = {  # record field: DDP logging key (ns)
    "fwd": "forward_compute_time",
    "bwd": "backward_compute_time",
    "comm": "backward_comm_time",
    "overlap": "backward_compute_comm_overlap_time",
}


class DdpRuntimeStats:
    """``watch(ddp)`` each DDP instance; ``read(step)`` returns a ``ddp`` record (docs/profile-format.md) per
    instance whose logger holds an iteration not read before."""

    def __init__(self, on_device: bool) -> None:
        self.rate = SAMPLE_RATE_DEVICE if on_device else SAMPLE_RATE_CPU
        self._watched: List[Any] = []  # weakrefs: a DDP instance is never kept alive by the profiler
        self._last: Dict[int, Any] = {}  # id(ddp) -> the comm start of the last iteration read

    def watch(self, ddp: Any) -> None:
        set_rate: Optional[Callable[[int], None]] = getattr(ddp, "_set_ddp_runtime_logging_sample_rate", None)
        if set_rate is None or not hasattr(ddp, "_get_ddp_logging_data"):
            return  # a torch without DDP's logger
        set_rate(self.rate)
        self._watched.append(weakref.ref(ddp))

    def stop(self) -> None:
        """Give the instances DDP's own sample rate back (on an accelerator ours waits for events)."""
        for ref in self._watched:
            ddp = ref()
            if ddp is not None:
                ddp._set_ddp_runtime_logging_sample_rate(SAMPLE_RATE_DDP)
        self._watched = []

    def read(self, step: int) -> List[Dict[str, Any]]:
        out = []
        alive = []
        for ref in self._watched:
            ddp = ref()
            if ddp is None:
                continue
            alive.append(ref)
            rec = self._record(ddp, step)
            if rec is not None:
                out.append(rec)
        self._watched = alive
        return out

    def _record(self, ddp: Any, step: int) -> Optional[Dict[str, Any]]:
        data = ddp._get_ddp_logging_data()
        # a new iteration's all-reduces start later: under no_sync() (gradient accumulation) DDP logs an
        # iteration whose comm timers are the last synchronised one's, which was read already
        seen = data.get("backward_comm_time_start")
        if not data.get(FIELDS["bwd"]) or seen is None or seen == self._last.get(id(ddp)):
            return None  # no backward timed yet, or its all-reduces already read
        self._last[id(ddp)] = seen
        rec: Dict[str, Any] = {"k": "ddp", "step": step, "it": int(data.get("iteration") or 0)}
        for name, key in FIELDS.items():
            rec[name] = int(data.get(key) or 0) * NS
        rec["buckets"] = int(data.get("num_buckets_reduced") or 0)
        rec["bytes"] = int(data.get("total_parameter_size_bytes") or 0)
        return rec
