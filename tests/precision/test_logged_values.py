"""A value the training loop only logs is no cause: torchtune's full-finetune recipe logs tokens per second as
``num_tokens / time_per_step``, a tensor divided by the wall time, different in every run; two clean fp32 runs of
it (tests by hand, docs/precision.md) listed that ``div`` as a *proven* divergence, "arguments differ: args[1]:
0.8195979250003802 vs 0.6188826640000116". The same division feeding the loss is a cause."""

import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps


def train(path: str, elapsed: float, into_loss: bool) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    with capture(path, mode="tensor", model=model):
        for _ in range(3):
            x = torch.randn(4, 8, generator=gen)
            num_tokens = torch.tensor(x.shape[0])  # an integer count, as the recipe's
            loss = model(x).square().mean()
            if into_loss:  # a rate that scales the loss (the same division, read by the model's loss)
                loss = loss * (num_tokens / elapsed)
            loss.backward()
            opt.step()
            opt.zero_grad()
            rate = num_tokens / elapsed  # the recipe's log line, after the step: elapsed is its wall time
            print(f"loss {loss.item():.4f} tokens/s {rate.detach().item():.1f}")


@pytest.mark.parametrize("into_loss", [False, True], ids=["logged", "into-loss"])
def test_a_value_only_logged_is_no_cause_and_one_the_model_reads_is(tmp_path, into_loss):
    train(str(tmp_path / "ref"), 0.62, into_loss)
    train(str(tmp_path / "run"), 0.82, into_loss)
    if into_loss:  # step 0 (after it the parameters differ: a parameter cause first)
        top = compare_dumps(str(tmp_path / "run"), str(tmp_path / "ref"), step=0).data["culprits"][0]
        assert (top["kind"], top["op"], top["verdict"]) == ("divergence", "aten::div.Tensor", "error")
        assert top["arg_diff"] == ["args[1]: 0.82 vs 0.62"]
        return
    for step in (1, 2):  # step N's log line is in step N + 1 (after its optimizer.step())
        assert compare_dumps(str(tmp_path / "run"), str(tmp_path / "ref"), step=step).data["culprits"] == []
