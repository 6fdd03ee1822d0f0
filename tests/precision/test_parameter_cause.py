"""A weight that differs from the reference's (a checkpoint key that did not load) is named as the cause: kind
``parameter``, the parameter's path, the op that read it first; a clean bf16 cast of the same weights is not."""

import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(16, 16) for _ in range(3)])
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.head(x)


def run(path, dtype, stale=False):
    with capture(str(path), mode="tensor"):
        torch.manual_seed(0)
        model = Net()
        if stale:
            with torch.no_grad():
                w = model.layers[1].weight
                w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(7)) * w.std())
        model.to(dtype)
        x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1)).to(dtype)
        model(x).float().pow(2).mean().backward()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
    return str(path)


@pytest.mark.parametrize("stats_only", [False, True], ids=["tensor", "stats"])
def test_a_stale_weight_is_the_cause(tmp_path, stats_only):
    ref = run(tmp_path / "ref", torch.float32)
    report = compare_dumps(run(tmp_path / "target", torch.bfloat16, stale=True), ref, stats_only=stats_only)
    top = report.data["culprits"][0]
    assert (top["kind"], top["module"], top["phase"]) == ("parameter", "layers.1", "forward")
    assert top["detail"].startswith("layers.1.weight differs")
    assert top["verdict"] == ("suspect" if stats_only else "error")
    assert "parameter layers.1.weight" in report.data["summary"]["cause"]
    clean = compare_dumps(run(tmp_path / "clean", torch.bfloat16), ref, stats_only=stats_only)
    assert [c for c in clean.data["culprits"] if c["kind"] == "parameter"] == []
