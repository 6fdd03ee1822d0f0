"""Two runs whose random generators differ (pytorch/examples' ``regression/main.py`` sets no seed; dropout on one
device's generator against another's) are named as such: kind ``random``, the first random op whose output
differs while its arguments and inputs agree. Known answers: the seeds each run was given."""

import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.drop = torch.nn.Dropout(0.1)
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def run(path, init_seed, train_seed, mode="tensor"):
    """The model made under ``init_seed``, then two SGD steps under ``train_seed`` (dropout's masks)."""
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(5))
    with capture(str(path), mode=mode):
        torch.manual_seed(init_seed)
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(train_seed)
        for _ in range(2):
            model(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    return str(path)


@pytest.mark.parametrize("mode", ["tensor", "stats"])
def test_another_seed_is_named_at_the_first_random_op(tmp_path, mode):
    ref = run(tmp_path / "ref", 0, 0, mode)
    report = compare_dumps(run(tmp_path / "seed1", 1, 1, mode), ref)
    top = report.data["culprits"][0]
    # the model's first random op: fc1's weight, kaiming_uniform_
    assert (top["kind"], top["name"], top["phase"]) == ("random", "aten::uniform_#init#0", "init")
    assert top["verdict"] == ("error" if mode == "tensor" else "suspect")
    assert report.data["summary"]["cause"].startswith(
        "the runs drew different random numbers: aten::uniform_#init#0"
    )
    assert not [c for c in report.data["culprits"] if c["kind"] == "divergence"]  # all of them follow from it
    assert compare_dumps(run(tmp_path / "clean", 0, 0, mode), ref).data["culprits"] == []


def test_other_dropout_masks_alone_are_named_at_the_dropout(tmp_path):
    """The same weights (one init seed), other random numbers from the first forward on: the dropout's."""
    ref = run(tmp_path / "ref", 0, 0)
    top = compare_dumps(run(tmp_path / "masks", 0, 1), ref).data["culprits"][0]
    assert (top["kind"], top["module"], top["phase"]) == ("random", "drop", "forward")
    assert top["op"] in ("aten::native_dropout", "aten::bernoulli_.float")
