"""A tiny training script run under an ``ascend-doctor`` verb (``dump``, ``shadow``) in a subprocess."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = """
import sys, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for i in range(3):
    loss = m(torch.randn(4, 8)).pow(2).mean()
    loss.backward(); opt.step(); opt.zero_grad()
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


@pytest.fixture
def run_verb(tmp_path):
    """``run_verb("dump", *args)``: the CLI with ``args``, where the word SCRIPT stands for the 3-step
    training script (written into tmp_path)."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)

    def run(verb, *args):
        cmd = [
            sys.executable,
            "-m",
            "ascend_tools.cli",
            verb,
            *[str(a).replace("SCRIPT", str(script)) for a in args],
        ]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture
def checks_on_the_worker(monkeypatch):
    """Shadow's checks of CPU ops go to its worker thread, as a device op's do (by default they run inline on
    the training thread: shadow_worker.INLINE_CPU): for the tests of the thread and of the copies it needs."""
    from ascend_tools.precision import shadow_worker

    monkeypatch.setattr(shadow_worker, "INLINE_CPU", False)
