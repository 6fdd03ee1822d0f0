"""What the CLI suites share (test_heldout_suite.py, test_precision_corpus*.py): reading a report's first culprit,
matching it against a known answer, printing a suite's table when run as a script, and the weights of a corpus
script's model config. (transformers is imported here, not in test_precision_corpus.py, whose scripts do not use
it: .ci/run's transformers-4 leg reruns the test files that import transformers.)"""

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional


def top(rep: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The first culprit row of a ``compare``/``shadow`` JSON report, or None."""
    rows = rep.get("culprits") or []
    return rows[0] if rows else None


def matches(row: Optional[Dict[str, Any]], want: Dict[str, Any]) -> bool:
    """Whether ``row`` has every field of ``want``; a tuple there lists the values allowed."""
    if row is None:
        return False
    for key, value in want.items():
        got = row.get(key)
        if isinstance(value, tuple) and got not in value:
            return False
        if not isinstance(value, tuple) and got != value:
            return False
    return True


def print_table(run: Callable[[str], Any], table: Callable[[Any], str]) -> None:
    """Run a suite in a temporary directory and print its table (``python tests/precision/test_*.py``)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        print(table(run(tmp)))
        print(f"\n({time.time() - start:.0f} s)")


def seeded_weights(model_dir: Path) -> None:
    """Weights for the config in ``model_dir`` (a corpus fixture holds the config only), drawn with seed 0: the same
    in every run of a scenario."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.AutoConfig.from_pretrained(model_dir)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
