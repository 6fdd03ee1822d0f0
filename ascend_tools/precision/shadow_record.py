"""One shadowed op call's record (what ``sh.results`` holds and ``rank{r}.jsonl`` lines carry), and the two
orders a report reads culprits in."""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from . import metrics as M
from .standards import Verdict


@dataclass
class ShadowRecord:
    """One shadowed op call: its identity, where it ran, and how far its output is from the float64
    reference computed on its own inputs (``metrics``, judged in ``verdict``). ``output`` is the index
    of the output judged (the worst one when the op has several)."""

    id: int  # position in the step's stream of aten ops (skipped ones included)
    name: str  # "aten::mm", "aten::add_.Tensor"
    phase: str  # "init" | "forward" | "backward" | "optimizer"
    call: int  # n-th call of this name in this phase and step, from 0 (every call counts)
    module: str
    site: str  # first frame outside torch, the stdlib and ascend_tools: "modeling_llama.py:80 in forward"
    metrics: M.PairMetrics
    verdict: Verdict
    input_shapes: List[List[int]] = field(default_factory=list)
    output: int = 0
    step: int = 0
    rank: int = 0
    # [checked, of] where a random set of the output's rows (an attention's: query rows of a slice of heads) was checked
    rows: Optional[List[int]] = None
    # [checked, of] columns where a block of an op over max_numel was checked (shadow_blocks.py)
    cols: Optional[List[int]] = None

    @property
    def key(self) -> str:
        """``aten::mm#forward#3``, the same key as a dump record's."""
        return f"{self.name}#{self.phase}#{self.call}"

    @property
    def ratio(self) -> float:
        """The introduced error in tolerances (``Verdict.ratio``)."""
        return self.verdict.ratio

    @property
    def level(self) -> str:
        return self.verdict.level

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out["metrics"] = {k: v for k, v in out["metrics"].items() if v is not None and v != ""}
        return out

    @classmethod
    def from_json(cls, raw: Dict[str, Any]) -> "ShadowRecord":
        raw = dict(raw)
        raw["metrics"] = M.PairMetrics(
            **{k: v for k, v in raw["metrics"].items() if k in M.PairMetrics.__dataclass_fields__}
        )
        raw["verdict"] = Verdict(
            **{k: v for k, v in raw["verdict"].items() if k in Verdict.__dataclass_fields__}
        )
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def culprits(records: Iterable[ShadowRecord]) -> List[ShadowRecord]:
    """Records judged "error", largest introduced error (ratio) first; ties in execution order."""
    found = [r for r in records if r.verdict.level == "error"]
    return sorted(found, key=lambda r: (-r.ratio, r.rank, r.step, r.id))


def first_culprit(records: Iterable[ShadowRecord]) -> Optional[ShadowRecord]:
    """The first record judged "error" in execution order (rank, step, position)."""
    found = [r for r in records if r.verdict.level == "error"]
    return min(found, key=lambda r: (r.rank, r.step, r.id)) if found else None
