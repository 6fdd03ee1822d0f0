"""Distributed profiling: every collective timed with bus bandwidth, slow ranks named, hangs caught with
the stacks of all ranks, device and host memory over time with OOM forensics (docs/profiling.md)."""
