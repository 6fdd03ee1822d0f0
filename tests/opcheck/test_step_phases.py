"""The phase of a traced script's ops between its backward and ``optimizer.step()``.

Gradient clipping (``clip_grad_norm_``: the norms, their sum, the scale of every gradient) runs after the backward
and outside every module; it was traced as forward ops. It is the optimizer's, as it is inside DeepSpeed's and
Megatron's optimizer steps. An op in that window that a next forward follows (the next micro-batch's input, under
gradient accumulation) stays a forward op.
"""

import json
import subprocess
import sys

SCRIPT = """\
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

model = Net().to("cuda")
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x = torch.randn(4, 8).to("cuda")
for micro in range(2):  # gradient accumulation
    loss = model(x).sum() / 2
    loss.backward()
    x = torch.flip(x, [0])  # the next micro-batch: between a backward and the next forward (and after the last)
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
opt.step()
"""


def test_clipping_between_backward_and_step_is_the_optimizers(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    out = tmp_path / "ops.json"
    cmd = [sys.executable, "-m", "ascend_tools.cli", "check-ops", "-f", "json", "-o", str(out)]
    proc = subprocess.run(
        [*cmd, "--", "python", "train.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.exists(), proc.stderr
    report = json.loads(out.read_text())
    assert report["trace"]["complete"], report["trace"]["stopped"]
    phases = {row["op"]: row["phases"] for row in report["ops"]}
    # clip_grad_norm_: per-gradient norms (foreach or not), their norm, the clip coefficient, the scaling
    norms = [op for op in phases if "norm" in op]
    assert norms and all(phases[op] == ["optimizer"] for op in norms), {op: phases[op] for op in norms}
    assert phases["aten::clamp"] == ["optimizer"]
    assert phases["aten::addmm"] == ["forward"] and phases["aten::threshold_backward"] == ["backward"]
    # the first flip feeds the second forward; the last one runs after the last backward, before the step
    assert phases["aten::flip"] == ["forward", "optimizer"]
