"""Global step numbers for training logs whose loss lines do not carry one.

Two shapes of log, read by :func:`ascend_tools.precision.losscurve.read_curve` through this module:

- **A step counted within the epoch.** MindFormers' ``MFLossMonitor`` prints
  ``{ Epoch:[  2/  3], step:[   10/  125], loss: ...``: step 10 of 125 in epoch 2. MindSpore's
  ``LossMonitor`` prints ``epoch: 2 step: 10, loss is 2.3456``, where the step is
  ``(cur_step_num - 1) % batch_num + 1``, again within the epoch, and ``batch_num`` is not printed. Read
  as they are, epoch 2's steps overwrite epoch 1's. The global step is
  ``(epoch - e0) * steps_per_epoch + step`` (MindFormers' own formula, ``global_step = cur_step_num +
  (cur_epoch_num - 1) * steps_per_epoch``), with ``e0`` = 0 when the log has an epoch 0 (MindVision's
  monitor, hand-written loops) and 1 otherwise. ``steps_per_epoch`` is the ``/ N`` of the line when it is
  printed; otherwise it is inferred: with ``p`` the usual distance between two logged steps of one epoch,
  the last logged step ``s`` of an epoch and the first ``f`` of the next are ``p`` apart, so
  ``steps_per_epoch = s + p - f`` (the largest over the epoch boundaries, and never less than the largest
  step seen); a log with one line per epoch (sink mode) has ``steps_per_epoch`` = its largest step. A log
  whose step keeps growing across epochs already counts global steps and is left as it is.
- **The step on a line of its own.** DeepSpeed's engine prints ``[Rank 0] step=N, skipped=K, lr=...``
  every ``steps_per_print`` steps (inside the optimizer step), and the training loop prints its loss on
  other lines: Hugging Face's Trainer prints ``{'loss': 2.075, ...}`` every ``logging_steps`` after the
  optimizer step, so a loss line right after the progress line ``step=N`` is step N (the learning rates of
  the two lines agree). When no loss line has a step, the loss lines right after a progress line take its
  step, and the ones in between are spaced evenly: ``interval = (N2 - N1) / k`` for two such anchors ``k``
  loss lines apart, the same for every pair of anchors, extended before the first anchor and after the
  last. A log where that does not fit (intervals that differ or are not whole) keeps the line-order
  numbering, with its warning.
"""

import re
import statistics
from typing import List, Optional, Sequence, Tuple

# epoch number on a line; the lookbehind keeps "num_epochs", "max_epoch" out
_EPOCH_RE = re.compile(r"(?<![\w/.-])epoch\s*(?:[:=]\s*)?(?:\[\s*)?(\d+)(?![\d.])", re.IGNORECASE)
# "step:[   10/  125]" / "step: 10/125": the steps per epoch after the slash
_PER_EPOCH_RE = re.compile(r"(?<![\w/.-])step\s*(?:[:=]\s*)?(?:\[\s*)?\d+\s*/\s*(\d+)", re.IGNORECASE)
# DeepSpeed's engine progress line (engine._report_progress)
_DEEPSPEED_RE = re.compile(r"(?<![\w/.-])step=(\d+), skipped=\d+")


class EpochStep:
    """What a loss line says about its place: the epoch, the step and, when printed, the steps per epoch."""

    __slots__ = ("epoch", "per_epoch", "step")

    def __init__(self, epoch: int, step: int, per_epoch: Optional[int]) -> None:
        self.epoch, self.step, self.per_epoch = epoch, step, per_epoch


def epoch_of(line: str, step: Optional[int]) -> Optional[EpochStep]:
    """The epoch of a loss line that has a step (None when the line names no epoch)."""
    if step is None:
        return None
    m = _EPOCH_RE.search(line)
    if not m:
        return None
    n = _PER_EPOCH_RE.search(line)
    return EpochStep(int(m.group(1)), step, int(n.group(1)) if n else None)


def deepspeed_step(line: str) -> Optional[int]:
    """The step of a DeepSpeed progress line (``step=N, skipped=K``), else None."""
    m = _DEEPSPEED_RE.search(line)
    return int(m.group(1)) if m else None


def global_steps(places: Sequence[EpochStep]) -> Optional[Tuple[List[int], str]]:
    """The global step of each line, and how it was computed; None when the steps are global already
    (no epoch restarts its counter)."""
    if not places or not _restarts(places):
        return None
    base = 0 if min(p.epoch for p in places) == 0 else 1
    printed = [p.per_epoch for p in places if p.per_epoch]
    if printed:
        per_epoch = max(printed)
        how = f"global step = (epoch - {base}) * {per_epoch} + step (steps per epoch as printed)"
    else:
        per_epoch = _inferred_per_epoch(places)
        how = f"global step = (epoch - {base}) * {per_epoch} + step (steps per epoch inferred from the log)"
    return [(p.epoch - base) * per_epoch + p.step for p in places], how


def _restarts(places: Sequence[EpochStep]) -> bool:
    """Whether the step counter goes back (or stays) when the epoch changes: a per-epoch counter."""
    return any(b.epoch > a.epoch and b.step <= a.step for a, b in zip(places, places[1:]))


def _inferred_per_epoch(places: Sequence[EpochStep]) -> int:
    by_epoch: List[List[int]] = []
    last_epoch = None
    for p in places:
        if p.epoch != last_epoch:
            by_epoch.append([])
            last_epoch = p.epoch
        by_epoch[-1].append(p.step)
    strides = [b - a for steps in by_epoch for a, b in zip(steps, steps[1:]) if b > a]
    largest = max(p.step for p in places)
    if not strides:  # one line per epoch (sink mode): the step printed is the epoch's last
        return largest + (1 if min(p.step for p in places) == 0 else 0)
    stride = int(statistics.median(strides))
    bounds = [prev[-1] + stride - nxt[0] for prev, nxt in zip(by_epoch, by_epoch[1:])]
    return max([largest, *bounds])


def steps_from_progress(
    loss_lines: Sequence[int], progress: Sequence[Tuple[int, int]]
) -> Optional[List[int]]:
    """The steps of step-less loss lines (their line numbers, ascending) from DeepSpeed progress lines
    (line number, step): the loss line right after a progress line is that step; the others are spaced
    evenly between them (see the module docstring). None when that does not fit the log."""
    anchors: List[Tuple[int, int]] = []  # (index of the loss line, step)
    i = 0
    bounds = [n for n, _ in progress[1:]] + [None]
    for (n, step), nxt in zip(progress, bounds):
        while i < len(loss_lines) and loss_lines[i] < n:
            i += 1
        if i < len(loss_lines) and (nxt is None or loss_lines[i] < nxt):
            anchors.append((i, step))
    if not anchors or (len(anchors) == 1 and len(loss_lines) > 1):
        return None
    intervals = {(s2 - s1, i2 - i1) for (i1, s1), (i2, s2) in zip(anchors, anchors[1:])}
    every = {d // k for d, k in intervals if d > 0 and d % k == 0}
    if len(every) > 1 or len(every) < len(intervals) or (intervals and not every):
        return None
    interval = every.pop() if every else 1
    i0, s0 = anchors[0]
    steps = [s0 + (i - i0) * interval for i in range(len(loss_lines))]
    return steps if steps[0] > 0 else None
