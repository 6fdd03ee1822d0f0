"""``ascend-doctor dump`` end to end on a small training script."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = """
import sys, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for i in range(3):
    loss = m(torch.randn(4, 8)).pow(2).mean()
    loss.backward(); opt.step(); opt.zero_grad()
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def _dump(tmp_path, *args):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "ascend_tools.cli", "dump", *[str(a).replace("SCRIPT", str(script)) for a in args]]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_three_steps_and_exit_status(tmp_path):
    out = tmp_path / "d"
    proc = _dump(tmp_path, "-o", out, "--", sys.executable, "SCRIPT", "3")
    assert proc.returncode == 3, proc.stderr
    assert sorted(os.listdir(out / "rank0")) == ["meta.json", "stacks.jsonl", "step0", "step1", "step2"]
    assert "rank 0:" in proc.stderr and "3 steps" in proc.stderr


def test_steps_filter(tmp_path):
    out = tmp_path / "d"
    proc = _dump(tmp_path, "-o", out, "--steps", "1", "--", sys.executable, "SCRIPT")
    assert proc.returncode == 0, proc.stderr
    assert sorted(n for n in os.listdir(out / "rank0") if n.startswith("step")) == ["step1"]


def test_bad_options_exit_2(tmp_path):
    proc = _dump(tmp_path, "-o", tmp_path / "d", "--steps", "a-b", "--", sys.executable, "SCRIPT")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = _dump(tmp_path, "-o", tmp_path / "d", "--", "no-such-command-xyz")
    assert proc.returncode == 2 and "command not found" in proc.stderr
