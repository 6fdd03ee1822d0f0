"""Loss curves of two runs (say NPU against GPU): read them, align them on common steps, measure the drift.

Readers, chosen by content (not by file name), each giving ``{step: loss}`` and the metric name used:

- Hugging Face ``trainer_state.json`` (``log_history``), or a directory holding one (``DIR/trainer_state.json``
  or the newest ``DIR/checkpoint-*/trainer_state.json``);
- JSON lines (one object per line; a truncated last line, as a killed run leaves, is skipped);
- CSV with a header, TensorBoard's scalar export (``Wall time,Step,Value``) included;
- plain logs: ``loss=1.23``, ``loss: 1.23``, ``'loss': 1.23``, ``"loss": 1.23`` and Megatron/MindSpeed
  ``lm loss: 1.234E+00``, with the step from ``step=N``, ``step N``, ``iteration N/ M``, ``'step': N`` on
  the same line, else the ordinal of the loss line.

Rules (see docs/loss-compare.md): run B is the reference; a step diverges when
``|a - b| > atol + rtol * |b|`` (``numpy.isclose``'s test) or when exactly one run's loss there is NaN/Inf;
the mean relative error is ``mean(|a - b| / |b|)`` over the common steps where both losses are finite.
"""

import csv
import glob
import io
import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .. import boundedio
from ..errors import InputError
from ..report import Finding, Report, Series, Severity, Table
from ..severity import worst
from . import logsteps, trainer_state
from .lossrule import DEFAULT_RULE, DEFAULT_WINDOW, Rule, RuleResult, evaluate, relative_error

SCHEMA = "ascend-doctor/loss-compare/1"
DEFAULT_RTOL = 0.02
DEFAULT_ATOL = 0.0
DEFAULT_MEAN_RTOL = 0.01
DEFAULT_ROWS = 10

# keys looked for in structured files (JSON lines, CSV), case-insensitive, in order of preference:
# the first one present in the file is the one used for the whole file
# (LLaMA-Factory's trainer_log.jsonl: "current_steps")
STEP_KEYS = ("step", "global_step", "train/global_step", "_step", "iteration", "iter", "current_steps")
LOSS_KEYS = ("loss", "train_loss", "train/loss", "lm loss", "lm_loss")
# keys looked for in plain logs, in order of preference (Megatron/MindSpeed print "lm loss" and "loss scale")
LOG_LOSS_KEYS = ("lm loss", "loss", "train_loss", "train/loss")

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])|[-+]?(?:nan|inf(?:inity)?)(?!\w)"
_STEP_RE = re.compile(
    # linear: "\s*[:=]?\s*\[?\s*" backtracked cubically over a run of blanks after "step" (143 s on 3 KB)
    r"(?<![\w/.-])['\"]?(?:global_step|step|iteration|iter)['\"]?\s*(?:[:=]\s*)?(?:\[\s*)?(\d+)(?![\d.])",
    re.IGNORECASE,
)
_TB_HEADER = ["wall time", "step", "value"]
# a launcher's per-rank prefix on each line: torchrun --tee's "[default0]:" ("[${role_name}${local_rank}]:"), a
# log_line_prefix_template's "[0]:" or "[rank0]:"; after the colour codes a terminal capture keeps
_RANK_PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)*\s*(\[[A-Za-z_]*?(\d+)\]:)")
# a log line reporting an evaluation loss: nanoGPT's "step 500: train loss 1.64, val loss 1.69" (train loss there is
# an estimate over eval batches, its "iter 500: loss 1.62" is the step's), mlx-lm's "Iter 10: Val loss 0.083",
# Megatron's " validation loss at iteration 20 | lm loss value: ..."; left out of the training curve
_EVAL_LINE = re.compile(
    r"(?<![\w/.-])(?:val|valid|validation|eval|evaluation|test|dev)[ _-]?loss(?!\w)", re.IGNORECASE
)


@dataclass
class Curve:
    """One run's loss curve. ``losses`` holds every step read, NaN/Inf included (they are skipped in the
    comparison and reported)."""

    source: str  # the path as given
    path: str  # the file actually read
    format: str  # trainer_state | jsonl | csv | tensorboard-csv | log
    metric: str  # the key (or log label) the losses came from
    losses: Dict[int, float]
    step_source: str = "file"  # "file": steps read from the input; "index": 1-based ordinal of the loss entry
    duplicates: int = 0  # steps seen more than once (the last value is kept: a resumed run rewrites them)
    no_step: int = 0  # loss entries without a step in a file where most entries have one (skipped)
    truncated: bool = False  # a JSON-lines file whose last line is cut off
    unreadable: List[str] = field(default_factory=list)  # trainer_state entries skipped: "line N: why"
    steps_note: str = ""  # how global steps were made from per-epoch counters or progress lines (logsteps)
    merged_note: str = (
        ""  # how the lines of several ranks, or a step logged several times in order, were merged
    )

    @property
    def steps(self) -> List[int]:
        return list(self.losses)

    @property
    def nonfinite_steps(self) -> List[int]:
        return [s for s, v in self.losses.items() if not math.isfinite(v)]


# ------------------------------------------------------------------------------------------------ readers


def read_curve(path: str, metric: Optional[str] = None) -> Curve:
    """The loss curve in ``path`` (a file or a Hugging Face output directory); ``metric`` overrides the
    loss key (e.g. ``eval_loss``). Raises :class:`InputError` naming ``path`` when nothing can be read."""
    shown = os.fspath(path)
    real = os.path.expanduser(shown)
    if not os.path.exists(real):
        raise InputError(f"{shown}: no such file or directory")
    if os.path.isdir(real):
        real = _trainer_state_in_dir(shown, real)
    wanted = metric or "loss"
    try:
        history = trainer_state.read_log_history(real, lambda e: _trainer_state_entry(e, wanted))
    except OSError as exc:
        raise InputError(f"{shown}: {(exc.strerror or str(exc)).lower()}") from exc
    if history is not None:
        if not history.entries:
            raise InputError(
                f"{shown}: no loss values found (read as trainer_state; looked for log_history entries with "
                f"'{wanted}' and 'step')"
            )
        curve = _finish(shown, real, "trainer_state", wanted, history.entries)
        curve.unreadable = history.unreadable
        return curve
    text = _read_text(shown, real)
    if not text.strip():
        raise InputError(f"{shown}: empty file")

    doc = _json_document(text)
    key: Optional[str]
    steps_note = ""
    ranks: List[Optional[str]] = []
    rows, truncated = _json_lines(text) if doc is None else (_doc_rows(doc), False)
    if rows is not None:
        fmt = "jsonl"
        curve_entries, key, looked = _from_rows(rows, metric)
    else:
        table = _csv_table(text, metric)
        if table is not None:
            header, body = table
            fmt = "tensorboard-csv" if [h.strip().lower() for h in header] == _TB_HEADER else "csv"
            curve_entries, key, looked = _from_rows(
                (dict(zip(header, r)) for r in body), metric, tensorboard=fmt == "tensorboard-csv"
            )
        else:
            fmt = "log"
            curve_entries, key, looked, steps_note, ranks = _from_log(text, metric)
    if not curve_entries:
        raise InputError(f"{shown}: no loss values found (read as {fmt}; looked for {looked})")
    curve = _finish(shown, real, fmt, key or "loss", curve_entries, ranks)
    curve.truncated = truncated
    curve.steps_note = steps_note
    return curve


def _read_text(shown: str, real: str) -> str:
    try:
        with open(real, "rb") as f:
            raw = boundedio.read_document(f)
    except ValueError as exc:
        raise InputError(f"{shown}: {exc}") from None
    except OSError as exc:
        raise InputError(f"{shown}: {(exc.strerror or str(exc)).lower()}") from exc
    if b"\x00" in raw[:8192]:
        if "tfevents" in os.path.basename(real):
            raise InputError(
                f"{shown}: a TensorBoard event file (binary); export the loss scalar as CSV from "
                f"TensorBoard and pass that file"
            )
        raise InputError(f"{shown}: a binary file, not a log, JSON, JSON-lines or CSV file")
    return raw.decode("utf-8", errors="replace").lstrip("\ufeff")


def _trainer_state_in_dir(shown: str, real: str) -> str:
    """``DIR/trainer_state.json`` or ``DIR/checkpoint-*/trainer_state.json``: the one with the largest
    ``global_step`` (the top-level file wins a tie: Trainer writes it last)."""
    candidates = []
    top = os.path.join(real, "trainer_state.json")
    if os.path.isfile(top):
        candidates.append((_global_step(top), 1, top))
    for p in glob.glob(os.path.join(glob.escape(real), "checkpoint-*", "trainer_state.json")):
        m = re.search(r"checkpoint-(\d+)$", os.path.dirname(p))
        if m:
            candidates.append((_global_step(p, int(m.group(1))), 0, p))
    if not candidates:
        raise InputError(
            f"{shown}: a directory without trainer_state.json (looked in it and in checkpoint-*/)"
        )
    return max(candidates)[2]


def _global_step(path: str, default: int = -1) -> int:
    step = trainer_state.global_step(path)
    return default if step is None else step


def _json_document(text: str) -> Any:
    """The whole text as one JSON value, or None when it is not one."""
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return None
    try:
        return boundedio.loads(text)
    except ValueError:
        return None


def _doc_rows(doc: Any) -> Optional[List[Dict[str, Any]]]:
    """A JSON document that is one object or a list of objects, as rows (else None: read it as a log)."""
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
        return doc
    return None


def _json_lines(text: str) -> Tuple[Optional[List[Dict[str, Any]]], bool]:
    """Rows when every non-blank line is a JSON object (the last one may be cut off), else None."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    rows: List[Dict[str, Any]] = []
    for i, line in enumerate(lines):
        try:
            obj = boundedio.loads(line)
        except ValueError:
            if i == len(lines) - 1 and rows and line.lstrip().startswith("{"):
                return rows, True
            return None, False
        if not isinstance(obj, dict):
            return None, False
        rows.append(obj)
    return rows or None, False


def _csv_table(text: str, metric: Optional[str]) -> Optional[Tuple[List[str], List[List[str]]]]:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delim = "," if "," in first else "\t" if "\t" in first else None
    if delim is None:
        return None
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delim) if any(c.strip() for c in r)]
    except csv.Error:  # a cell over csv's field limit, a NUL: not a table
        return None
    if not rows:  # delimiters only: no header
        return None
    header = [c.strip() for c in rows[0]]
    names = {h.lower() for h in header}
    known = set(STEP_KEYS) | set(LOSS_KEYS) | {"value"} | ({metric.lower()} if metric else set())
    if not names & known or any(_number(h) is not None for h in header):
        return None
    return header, rows[1:]


def _number(value: Any) -> Optional[float]:
    """A loss/step cell as a float (NaN and Inf included), or None when it is empty or not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        s = value.strip()
        if s.lower().startswith("tensor(") and s.endswith(")"):
            s = s[7:-1].split(",")[0]
        try:
            return float(s)
        except ValueError:
            return None
    return None


def _step(value: Any) -> Optional[int]:
    v = _number(value)
    if v is None or not math.isfinite(v) or v != int(v):
        return None
    return int(v)


Entry = trainer_state.Entry


def _trainer_state_entry(e: Any, key: str) -> Optional[Entry]:
    """A log_history entry with ``key`` and ``step`` as ``(step, loss)``. The default key is ``loss``, never
    ``train_loss``: Trainer's closing entry holds the whole run's average under that name, at the last step."""
    if isinstance(e, dict) and key in e and "step" in e:
        v, s = _number(e[key]), _step(e["step"])
        if v is not None and s is not None:
            return s, v
    return None


def _pick_key(names: Iterable[str], wanted: Sequence[str]) -> Optional[str]:
    """The first of ``wanted`` (case-insensitive) among ``names``, spelled as in ``names``."""
    lower: Dict[str, str] = {}
    for n in names:
        lower.setdefault(str(n).strip().lower(), n)
    for w in wanted:
        if w.lower() in lower:
            return lower[w.lower()]
    return None


def _from_rows(
    rows: Iterable[Dict[str, Any]], metric: Optional[str], tensorboard: bool = False
) -> Tuple[List[Entry], Optional[str], str]:
    rows = list(rows)
    names: Dict[str, None] = {}
    for r in rows:
        for k in r:
            names[k] = None
    wanted = (metric,) if metric else LOSS_KEYS
    if tensorboard and (not metric or _pick_key(names, wanted) is None):
        wanted = ("Value",)
    lkey = _pick_key(names, wanted)
    skey = _pick_key(names, STEP_KEYS)
    looked = f"a loss key ({', '.join(wanted)}) with a step key ({', '.join(STEP_KEYS)})"
    if lkey is None:
        return [], None, looked
    out: List[Entry] = []
    for r in rows:
        v = _number(r.get(lkey))
        if v is None:
            continue  # a row logging other metrics (eval lines, an empty CSV cell)
        out.append((_step(r.get(skey)) if skey is not None else None, v))
    return out, (f"Value ({metric})" if metric and lkey == "Value" and tensorboard else lkey), looked


def _key_regex(key: str) -> "re.Pattern[str]":
    name = r"\s+".join(re.escape(part) for part in key.split())
    return re.compile(
        # "loss is 2.3" (MindSpore), "loss:[5.258/5.258]" (MindFormers without sink mode: the step's loss first)
        r"(?<![\w/.-])['\"]?"
        + name
        + r"['\"]?(?:\s*[:=]|\s+is\s|\s)\s*(?:tensor\(\s*|\[\s*)?("
        + _NUMBER
        + ")",
        re.IGNORECASE,
    )


def _from_log(
    text: str, metric: Optional[str]
) -> Tuple[List[Entry], Optional[str], str, str, List[Optional[str]]]:
    """The loss lines as ``(step, loss)``, the key, what was looked for, how the steps were numbered when the
    lines do not carry global steps (see :mod:`.logsteps`; "" otherwise), and each line's rank prefix
    (``[default0]:``) or None."""
    keys = (metric,) if metric else LOG_LOSS_KEYS
    looked = "lines with " + ", ".join(f"'{k}=' / '{k}:'" for k in keys)
    lines = text.splitlines()
    if not metric:  # the training loss: evaluation lines out, unless no other line has a loss
        training = ["" if _EVAL_LINE.search(line) else line for line in lines]  # (line numbers kept)
        entries, key, note, ranks = _loss_lines(training, keys)
        if entries:
            return entries, key, looked, note, ranks
    entries, key, note, ranks = _loss_lines(lines, keys)
    return entries, key, looked, note, ranks


def _loss_lines(
    lines: List[str], keys: Sequence[str]
) -> Tuple[List[Entry], Optional[str], str, List[Optional[str]]]:
    """The ``(step, loss)`` entries of the first of ``keys`` found in ``lines``, the key, the steps' note, and
    each entry's rank prefix (None without one)."""
    for key in keys:
        rx = _key_regex(key)
        out: List[Entry] = []
        places: List[Optional[logsteps.EpochStep]] = []
        at: List[int] = []
        ranks: List[Optional[str]] = []
        for n, line in enumerate(lines):
            m = rx.search(line)
            if not m:
                continue
            s = _STEP_RE.search(line)
            step = int(s.group(1)) if s else None
            out.append((step, float(m.group(1))))
            places.append(logsteps.epoch_of(line, step))
            at.append(n)
            prefix = _RANK_PREFIX.match(line)
            ranks.append(prefix.group(1) if prefix else None)
        if out:
            entries, note = _log_steps(out, places, at, lines)
            return entries, key, note, ranks
    return [], None, "", []


def _log_steps(
    entries: List[Entry], places: List[Optional[logsteps.EpochStep]], at: List[int], lines: List[str]
) -> Tuple[List[Entry], str]:
    """Global steps for per-epoch counters and for DeepSpeed's progress lines (:mod:`.logsteps`)."""
    stepped = [i for i, (s, _) in enumerate(entries) if s is not None]
    known = [places[i] for i in stepped]
    if known and all(p is not None for p in known):
        found = logsteps.global_steps([p for p in known if p is not None])
        if found is not None:
            steps, how = found
            out = list(entries)
            for i, s in zip(stepped, steps):
                out[i] = (s, entries[i][1])
            return out, how
    if all(s is None for s, _ in entries):
        loss_at = set(at)
        progress = []
        for n, line in enumerate(lines):
            step = None if n in loss_at else logsteps.deepspeed_step(line)
            if step is not None:
                progress.append((n, step))
        paired = logsteps.steps_from_progress(at, progress)
        if paired is not None:
            note = "steps from DeepSpeed's progress lines (step=N, skipped=...), the loss lines between them evenly spaced"
            return [(s, v) for s, (_, v) in zip(paired, entries)], note
    return entries, ""


def _finish(
    shown: str, real: str, fmt: str, key: str, entries: List[Entry], ranks: Sequence[Optional[str]] = ()
) -> Curve:
    """The curve of ``entries``; where ``ranks`` holds two or more rank prefixes (a launcher interleaving the
    ranks' output), each rank's lines are read as a curve of its own and each step's loss is the mean over the
    ranks that logged it: a loop that prints its rank's own loss logs 1/N of the global batch per rank, and the
    mean is the global batch's loss (what Hugging Face's Trainer and Megatron log, reduced over the ranks)."""
    groups: Dict[Optional[str], List[Entry]] = {}
    for entry, rank in zip(entries, ranks or [None] * len(entries)):
        groups.setdefault(rank, []).append(entry)
    if len([r for r in groups if r is not None]) < 2:
        groups = {None: entries}
    parts = [_steps_of(g) for r, g in groups.items() if r is not None or len(groups) == 1]
    losses, step_source, duplicates, no_step, merged = parts[0]
    if len(parts) > 1:
        per_step: Dict[int, List[float]] = {}
        for part in parts:
            for s, v in part[0].items():
                per_step.setdefault(s, []).append(v)
        losses = {s: sum(v) / len(v) for s, v in sorted(per_step.items())}
        step_source = "index" if any(p[1] == "index" for p in parts) else "file"
        duplicates, no_step = sum(p[2] for p in parts), sum(p[3] for p in parts)
        names = [r for r in groups if r is not None]
        merged = (
            f"lines of {len(names)} ranks ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): each "
            "step's loss is the mean over the ranks that logged it"
        )
        if None in groups:
            merged += f"; {len(groups[None])} loss lines without a rank prefix left out"
    return Curve(
        source=shown,
        path=real,
        format=fmt,
        metric=key,
        losses=losses,
        step_source=step_source,
        duplicates=duplicates,
        no_step=no_step,
        merged_note=merged,
    )


def _steps_of(entries: List[Entry]) -> Tuple[Dict[int, float], str, int, int, str]:
    """``(losses by step, step source, steps logged again, entries without a step, merge note)`` of one stream
    of loss entries. A step logged again is a resumed run rewriting it: the later value is kept. Where every
    step is logged the same number of times (ranks without a prefix: in a row where each line reaches the log at
    once, in blocks where each process buffers its output; or a loss line per micro-batch), a step's loss is the
    mean of its values: a resumed run goes back to its checkpoint, so the steps before it are logged once."""
    with_step = [(s, v) for s, v in entries if s is not None]
    # steps from the file when most loss entries carry one (the others are skipped and reported); a stray
    # "step" on a summary line does not turn a step-less log into a one-step curve
    if with_step and 2 * len(with_step) >= len(entries):
        step_source, no_step = "file", len(entries) - len(with_step)
        pairs: List[Tuple[int, float]] = with_step
    else:
        step_source, no_step = "index", 0
        pairs = [(i, v) for i, (_, v) in enumerate(entries, 1)]
    values: Dict[int, List[float]] = {}
    for s, v in pairs:
        values.setdefault(s, []).append(v)
    counts = {len(v) for v in list(values.values())[:-1]}  # the last step may be cut short
    if counts and min(counts) > 1 and len(counts) == 1:
        order = [s for s, _ in pairs]
        if all(a <= b for a, b in zip(order, order[1:])):
            how = "in a row (ranks without a prefix, or a line per micro-batch)"
        else:
            how = (
                "in blocks that start over (the buffered output of processes without a rank prefix, or a run "
                "restarted from its first step)"
            )
        note = f"every step logged {counts.pop()} times {how}: each step's loss is the mean of its lines"
        return {s: sum(v) / len(v) for s, v in values.items()}, step_source, 0, no_step, note
    losses: Dict[int, float] = {}
    duplicates = 0
    for s, v in pairs:
        if s in losses:
            duplicates += 1
            del losses[s]  # a resumed run logs the step again: keep the later value
        losses[s] = v
    return dict(sorted(losses.items())), step_source, duplicates, no_step, ""


# ------------------------------------------------------------------------------------------------ compare


@dataclass
class Comparison:
    a: Curve
    b: Curve
    label_a: str
    label_b: str
    rtol: float
    atol: float
    mean_rtol: float
    common: List[int]  # steps in both runs (finite or not)
    steps: np.ndarray  # common steps where both losses are finite, ascending
    va: np.ndarray
    vb: np.ndarray
    abs_diff: np.ndarray
    rel_err: np.ndarray
    beyond: np.ndarray  # bool per compared step: |a - b| > atol + rtol * |b|
    judged: RuleResult  # the verdict rule (lossrule) on the compared steps
    nan_mismatch: List[Tuple[int, str]] = field(default_factory=list)  # (step, which run is NaN/Inf)
    both_nonfinite: List[int] = field(default_factory=list)

    @property
    def mean_rel_err(self) -> Optional[float]:
        return float(np.mean(self.rel_err)) if self.rel_err.size else None

    @property
    def max_abs(self) -> Tuple[Optional[float], Optional[int]]:
        if not self.abs_diff.size:
            return None, None
        i = int(np.argmax(self.abs_diff))
        return float(self.abs_diff[i]), int(self.steps[i])

    @property
    def first_beyond(self) -> Optional[int]:
        idx = np.flatnonzero(self.beyond)
        return int(self.steps[idx[0]]) if idx.size else None

    @property
    def first_divergent(self) -> Tuple[Optional[int], Optional[str]]:
        """The first step that fails the rule or has a NaN/Inf loss on one side only, and why."""
        cands = []
        if self.judged.first_failing is not None:
            cands.append((self.judged.first_failing, "tolerance"))
        if self.nan_mismatch:
            cands.append((self.nan_mismatch[0][0], "nonfinite"))
        return min(cands) if cands else (None, None)

    @property
    def mean_beyond(self) -> bool:
        m = self.mean_rel_err
        return m is not None and m > self.mean_rtol


def compare_curves(
    a: Curve,
    b: Curve,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    mean_rtol: float = DEFAULT_MEAN_RTOL,
    label_a: Optional[str] = None,
    label_b: Optional[str] = None,
    rule: Optional[Rule] = None,
) -> Comparison:
    """Align ``a`` (the run under test) and ``b`` (the reference) on their common steps, measure them and
    judge them by ``rule`` (default: the smoothed rule with ``rtol``/``atol``, see :mod:`.lossrule`).
    Raises :class:`InputError` when the two runs share no step."""
    rule = rule or Rule(rtol=rtol, atol=atol)
    common = sorted(set(a.losses) & set(b.losses))
    if not common:
        raise InputError(
            f"{a.source} and {b.source}: no common step (steps {_span(a.steps)} against "
            f"{_span(b.steps)}; {a.source} {_step_note(a)}, {b.source} {_step_note(b)})"
        )
    finite, nan_mismatch, both_nan = [], [], []
    for s in common:
        fa, fb = math.isfinite(a.losses[s]), math.isfinite(b.losses[s])
        if fa and fb:
            finite.append(s)
        elif fa or fb:
            nan_mismatch.append((s, "b" if fa else "a"))
        else:
            both_nan.append(s)
    steps = np.asarray(finite, dtype=np.int64)
    va = np.asarray([a.losses[s] for s in finite], dtype=np.float64)
    vb = np.asarray([b.losses[s] for s in finite], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 - -1e308: Inf, and diverged
        abs_diff = np.abs(va - vb)
        beyond = abs_diff > atol + rtol * np.abs(vb)
    rel = relative_error(va, vb)
    la, lb = default_labels(a, b, label_a, label_b)
    return Comparison(
        a=a,
        b=b,
        label_a=la,
        label_b=lb,
        rtol=rtol,
        atol=atol,
        mean_rtol=mean_rtol,
        common=common,
        steps=steps,
        va=va,
        vb=vb,
        abs_diff=abs_diff,
        rel_err=rel,
        beyond=beyond,
        judged=evaluate(rule, steps, va, vb),
        nan_mismatch=nan_mismatch,
        both_nonfinite=both_nan,
    )


def default_labels(a: Curve, b: Curve, label_a: Optional[str], label_b: Optional[str]) -> Tuple[str, str]:
    """The given labels, else the file names (the paths when the names are the same); never two equal."""

    def name(c: Curve) -> str:
        return os.path.basename(os.path.normpath(c.source)) or c.source

    na, nb = name(a), name(b)
    if na == nb:
        na, nb = a.source, b.source
    la, lb = label_a or na, label_b or nb
    if la == lb:
        la, lb = f"{la} (A)", f"{lb} (B)"
    return la, lb


def _span(steps: Sequence[int]) -> str:
    return f"{steps[0]}..{steps[-1]}" if steps else "none"


def _step_note(c: Curve) -> str:
    return "numbered by line order" if c.step_source == "index" else "steps from the file"


# ------------------------------------------------------------------------------------------------ report


def _f(v: Optional[float]) -> Optional[float]:
    return None if v is None else float(v)


def build_report(cmp: Comparison, rows: int = DEFAULT_ROWS) -> Report:
    a, b = cmp.a, cmp.b
    la, lb = cmp.label_a, cmp.label_b
    max_abs, max_abs_step = cmp.max_abs
    first, why = cmp.first_divergent
    n = int(cmp.steps.size)
    final = None
    if n:
        fa, fb = float(cmp.va[-1]), float(cmp.vb[-1])
        final = OrderedDict(step=int(cmp.steps[-1]), a=fa, b=fb, diff=fa - fb, rel_err=float(cmp.rel_err[-1]))
    findings = _findings(cmp)
    worst_severity = worst(f.severity for f in findings)
    diverged = worst_severity == Severity.ERROR

    def run(c: Curve, label: str) -> Dict[str, Any]:
        return OrderedDict(
            label=label,
            path=c.source,
            file=c.path,
            format=c.format,
            metric=c.metric,
            step_source=c.step_source,
            steps=len(c.losses),
            first_step=c.steps[0] if c.steps else None,
            last_step=c.steps[-1] if c.steps else None,
            nonfinite_steps=c.nonfinite_steps,
            duplicates=c.duplicates,
            no_step=c.no_step,
            truncated=c.truncated,
            unreadable=len(c.unreadable),
            first_unreadable=c.unreadable[0] if c.unreadable else None,
            steps_note=c.steps_note or None,
            merged_note=c.merged_note or None,
        )

    only_a = sorted(set(a.losses) - set(b.losses))
    only_b = sorted(set(b.losses) - set(a.losses))
    run_a, run_b = run(a, la), run(b, lb)
    data = OrderedDict(
        run_a=run_a,
        run_b=run_b,
        steps=OrderedDict(
            a=len(a.losses),
            b=len(b.losses),
            common=len(cmp.common),
            compared=n,
            only_a=len(only_a),
            only_b=len(only_b),
        ),
        rtol=cmp.rtol,
        atol=cmp.atol,
        mean_rtol=cmp.mean_rtol,
        mean_rel_err=cmp.mean_rel_err,
        max_rel_err=float(np.max(cmp.rel_err)) if n else None,
        max_abs_diff=max_abs,
        max_abs_diff_step=max_abs_step,
        first_divergent_step=first,
        first_divergent_reason=why,
        steps_beyond_tolerance=int(np.count_nonzero(cmp.beyond)),
        rule=OrderedDict(
            name=cmp.judged.rule.name,
            window=cmp.judged.rule.effective_window,
            from_step=cmp.judged.start,
            statement=cmp.judged.rule.describe(cmp.judged.start),
            passed=cmp.judged.passed,
            first_failing_step=cmp.judged.first_failing,
            failing_steps=cmp.judged.failing,
        ),
        nonfinite_mismatch=[OrderedDict(step=s, nonfinite_in=w) for s, w in cmp.nan_mismatch],
        final=final,
        verdict="diverged" if diverged else "within tolerance",
        worst_severity=str(worst_severity) if worst_severity else None,
        points=[
            OrderedDict(step=int(s), a=float(x), b=float(y), abs_diff=float(d), rel_err=float(r))
            for s, x, y, d, r in zip(cmp.steps, cmp.va, cmp.vb, cmp.abs_diff, cmp.rel_err)
        ],
    )
    report = Report(schema=SCHEMA, title=f"loss-compare: {la} vs {lb}", data=data)
    report.summary = [
        ("verdict", "diverged" if diverged else "ok"),
        ("steps compared", f"{n} (of {len(a.losses)} / {len(b.losses)})"),
        ("mean rel. error", cmp.mean_rel_err),
        ("max abs. diff", "—" if max_abs is None else f"{max_abs:.4g} at step {max_abs_step}"),
        ("first divergent step", "none" if first is None else first),
        ("final loss diff", "—" if final is None else f"{final['diff']:+.4g} at step {final['step']}"),
        ("rule", cmp.judged.rule.describe(cmp.judged.start) + f"; mean relative error <= {cmp.mean_rtol:g}"),
    ]

    sec = report.section("Runs", [f"{lb} is the reference: relative errors are |{la} − {lb}| / |{lb}|."])
    sec.tables.append(
        Table(
            "",
            ["run", "label", "format", "metric", "steps", "first", "last", "NaN/Inf", "file"],
            [
                [
                    r,
                    d["label"],
                    d["format"],
                    d["metric"] + (" (steps = line order)" if d["step_source"] == "index" else ""),
                    d["steps"],
                    d["first_step"],
                    d["last_step"],
                    len(d["nonfinite_steps"]),
                    d["file"],
                ]
                for r, d in (("A", run_a), ("B", run_b))
            ],
        )
    )

    sec = report.section("Comparison")
    sec.tables.append(
        Table(
            "",
            ["metric", "value"],
            [
                ["steps compared (both finite)", n],
                ["mean relative error", cmp.mean_rel_err],
                ["max relative error", data["max_rel_err"]],
                ["max absolute difference", max_abs],
                ["  at step", max_abs_step],
                ["steps beyond tolerance", data["steps_beyond_tolerance"]],
                ["first divergent step", first],
                [f"final loss {la}", None if final is None else final["a"]],
                [f"final loss {lb}", None if final is None else final["b"]],
                ["final loss difference (A − B)", None if final is None else final["diff"]],
            ],
        )
    )
    sec.findings.extend(findings)
    if not findings:
        sec.text.append("Every common step is within tolerance.")

    if n:
        sec = report.section("Loss curves")
        marks: List[Tuple[float, str]] = (
            [(first, f"first divergent step {first}")] if first is not None else []
        )
        sec.series.append(
            Series(
                f"{a.metric} per step",
                "step",
                "loss",
                OrderedDict(
                    [
                        (la, list(zip(cmp.steps.tolist(), cmp.va.tolist()))),
                        (lb, list(zip(cmp.steps.tolist(), cmp.vb.tolist()))),
                    ]
                ),
                marks=marks,
            )
        )
        x0, x1 = int(cmp.steps[0]), int(cmp.steps[-1])
        sec.series.append(
            Series(
                "relative error |A − B| / |B| per step",
                "step",
                "relative error",
                OrderedDict(
                    [
                        ("relative error", list(zip(cmp.steps.tolist(), cmp.rel_err.tolist()))),
                        *(
                            [(f"of the means of {w}", list(zip(cmp.steps.tolist(), cmp.judged.rel.tolist())))]
                            if (w := cmp.judged.rule.effective_window) > 1
                            else []
                        ),
                        (
                            f"rtol {cmp.judged.rule.rtol:g}",
                            [(x0, cmp.judged.rule.rtol), (x1, cmp.judged.rule.rtol)],
                        ),
                    ]
                ),
                marks=marks,
            )
        )
        sec = report.section("Steps")
        sec.tables.append(_step_table(cmp, rows))
    return report


def _step_table(cmp: Comparison, rows: int) -> Table:
    n = int(cmp.steps.size)
    why: Dict[int, List[str]] = {}
    for i in range(min(rows, n)):
        why.setdefault(i, []).append("first")
    for i in range(max(0, n - rows), n):
        why.setdefault(i, []).append("last")
    finite_rel = np.where(np.isfinite(cmp.rel_err), cmp.rel_err, np.finfo(np.float64).max)
    for i in np.argsort(-finite_rel, kind="stable")[:rows]:
        why.setdefault(int(i), []).append("worst")
    first = cmp.judged.first_failing
    # failing: the rule fails there, or the raw losses are beyond tolerance from the reported step on
    failing = cmp.judged.fails | (cmp.beyond & (cmp.steps >= first if first is not None else False))
    if first is not None:
        why.setdefault(int(np.flatnonzero(cmp.steps == first)[0]), []).append("first divergent")
    out = []
    for i in sorted(why):
        out.append(
            [
                int(cmp.steps[i]),
                float(cmp.va[i]),
                float(cmp.vb[i]),
                float(cmp.va[i]) - float(cmp.vb[i]),  # Python floats: Inf on overflow, no warning
                float(cmp.rel_err[i]),
                float(cmp.judged.rel[i]),
                "diverged" if failing[i] else "ok",
                ", ".join(why[i]),
            ]
        )
    note = (
        f"{len(out)} of {n} steps: the first {rows}, the last {rows} and the {rows} worst by relative error."
    )
    return Table(
        "",
        [
            "step",
            f"A: {cmp.label_a}",
            f"B: {cmp.label_b}",
            "A − B",
            "rel. error",
            f"rel. error of the rule (W={cmp.judged.rule.effective_window})",
            "status",
            "shown as",
        ],
        out,
        note=note,
        status_column="status",
    )


def _steps_text(steps: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(s) for s in steps[:limit])
    return shown + (f", … ({len(steps)} in all)" if len(steps) > limit else "")


def _findings(cmp: Comparison) -> List[Finding]:
    out = []
    la, lb = cmp.label_a, cmp.label_b
    judged = cmp.judged
    first = judged.first_failing
    if first is not None:
        i = int(np.flatnonzero(cmp.steps == judged.detected_at)[0])
        k, n = judged.failing, int(np.count_nonzero(cmp.steps >= (judged.start or 0)))
        if judged.rule.name == "smoothed":
            what = (
                f"the means of the last {judged.rule.window} losses part at step {judged.detected_at}: "
                f"{la} {judged.smoothed_a[i]:.6g} vs {lb} {judged.smoothed_b[i]:.6g}, relative difference "
                f"{judged.rel[i]:.3g}"
            )
        else:
            what = f"{la} {cmp.va[i]:.6g} vs {lb} {cmp.vb[i]:.6g}, relative error {cmp.rel_err[i]:.3g}"
        out.append(
            Finding(
                Severity.ERROR,
                "loss-divergence",
                f"step {first}: {what} beyond rtol {judged.rule.rtol:g} (atol {judged.rule.atol:g}); "
                f"{k} of {n} judged steps fail the rule",
                location=f"step {first}",
                suggestion=f"capture step {first} (or the step before) on both runs with `ascend-doctor dump` and run "
                f"`ascend-doctor compare` to find the op that introduced the error",
            )
        )
    if cmp.mean_beyond:
        out.append(
            Finding(
                Severity.ERROR,
                "loss-mean-error",
                f"mean relative error {cmp.mean_rel_err:.3g} over {cmp.steps.size} steps is beyond {cmp.mean_rtol:g}",
                suggestion="check the data order and seeds first (same shuffling, same dropout); then dump and compare",
            )
        )
    if cmp.nan_mismatch:
        s, w = cmp.nan_mismatch[0]
        name, other = (la, lb) if w == "a" else (lb, la)
        steps = [x for x, _ in cmp.nan_mismatch]
        out.append(
            Finding(
                Severity.ERROR,
                "loss-nonfinite",
                f"{name} has a NaN/Inf loss at step {s} where {other} is finite "
                f"({len(steps)} such step{'s' if len(steps) != 1 else ''}: {_steps_text(steps)})",
                location=f"step {s}",
                suggestion="look for overflow: fp16-only parts saturate; dump that step in stats mode and check the "
                "NaN/Inf/saturation counts",
            )
        )
    for c, label in ((cmp.a, la), (cmp.b, lb)):
        bad = c.nonfinite_steps
        if bad:
            out.append(
                Finding(
                    Severity.WARNING,
                    "nonfinite-skipped",
                    f"{label}: {len(bad)} NaN/Inf loss value{'s' if len(bad) != 1 else ''} skipped "
                    f"(step {_steps_text(bad)})",
                    location=c.source,
                )
            )
        if c.step_source == "index":
            out.append(
                Finding(
                    Severity.WARNING,
                    "no-step-numbers",
                    f"{label}: no step numbers found; the n-th loss line is step n",
                    location=c.source,
                    suggestion="log the step with the loss (step=N) so runs with different logging "
                    "intervals still align",
                )
            )
        if c.steps_note:
            out.append(Finding(Severity.INFO, "global-steps", f"{label}: {c.steps_note}", location=c.source))
        if c.merged_note:
            out.append(Finding(Severity.INFO, "merged-lines", f"{label}: {c.merged_note}", location=c.source))
        if c.no_step:
            out.append(
                Finding(
                    Severity.INFO,
                    "loss-without-step",
                    f"{label}: {c.no_step} loss line{'s' if c.no_step != 1 else ''} without a step skipped",
                    location=c.source,
                )
            )
        if c.duplicates:
            out.append(
                Finding(
                    Severity.INFO,
                    "duplicate-steps",
                    f"{label}: {c.duplicates} step{'s' if c.duplicates != 1 else ''} logged more than "
                    f"once (a resumed run?); the last value is used",
                    location=c.source,
                )
            )
        if c.truncated:
            out.append(
                Finding(
                    Severity.INFO,
                    "truncated",
                    f"{label}: the last line is cut off and was skipped",
                    location=c.source,
                )
            )
        if c.unreadable:
            n = len(c.unreadable)
            out.append(
                Finding(
                    Severity.WARNING,
                    "unreadable-entries",
                    f"{label}: {n} unreadable log_history entr{'y' if n == 1 else 'ies'} skipped "
                    f"(first: {c.unreadable[0]})",
                    location=c.path,
                )
            )
    only_a = len(set(cmp.a.losses) - set(cmp.b.losses))
    only_b = len(set(cmp.b.losses) - set(cmp.a.losses))
    if only_a or only_b:
        out.append(
            Finding(
                Severity.INFO,
                "unmatched-steps",
                f"{only_a} step{'s' if only_a != 1 else ''} only in {la}, {only_b} only in {lb}; "
                f"{len(cmp.common)} are in both",
            )
        )
    if cmp.a.metric.lower() != cmp.b.metric.lower():
        out.append(
            Finding(
                Severity.INFO,
                "different-metrics",
                f"{la} reports '{cmp.a.metric}', {lb} reports '{cmp.b.metric}'",
            )
        )
    return out


def loss_compare(
    run_a: str,
    run_b: str,
    metric: Optional[str] = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    mean_rtol: float = DEFAULT_MEAN_RTOL,
    label_a: Optional[str] = None,
    label_b: Optional[str] = None,
    rows: int = DEFAULT_ROWS,
    rule: str = DEFAULT_RULE,
    window: int = DEFAULT_WINDOW,
    from_step: Optional[int] = None,
) -> Report:
    """Read both runs, compare them, and build the report (what the CLI verb does)."""
    a = read_curve(run_a, metric)
    b = read_curve(run_b, metric)
    judge = Rule(name=rule, rtol=rtol, atol=atol, window=window, from_step=from_step)
    return build_report(
        compare_curves(
            a, b, rtol=rtol, atol=atol, mean_rtol=mean_rtol, label_a=label_a, label_b=label_b, rule=judge
        ),
        rows=rows,
    )


__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_MEAN_RTOL",
    "DEFAULT_RTOL",
    "SCHEMA",
    "Comparison",
    "Curve",
    "build_report",
    "compare_curves",
    "loss_compare",
    "read_curve",
    "relative_error",
]
