"""The fake node shows ``cuda:N`` to the user's code and ``meta`` to libraries (opcheck/user_device.py)."""

import textwrap

import torch
from test_script_run import check_ops, ops_of

from ascend_tools.opcheck import fake_accelerator

BRANCHING = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        if h.device.type == "cuda" and str(h.device).startswith("cuda"):
            h = torch.tanh(h)  # the accelerator path only
        else:
            h = torch.sigmoid(h)
        if x.device == torch.device("cuda", 0):
            h = h.exp()  # the accelerator path only
        return h

device = torch.device("cuda", 0)
model = Net().to(device)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.ones(2, 4, device=device)).sum().backward()
opt.step()
"""


def test_a_branch_on_the_device_type_takes_the_accelerator_path(tmp_path):
    (tmp_path / "branching.py").write_text(BRANCHING)
    proc, report = check_ops(tmp_path, "python", str(tmp_path / "branching.py"))
    assert report is not None, proc.stderr
    assert report["trace"]["complete"], report["trace"]["stopped"]
    ops = ops_of(report)
    assert "aten::tanh" in ops and "aten::exp" in ops
    assert "aten::sigmoid" not in ops


def _compiled_as(filename: str, source: str) -> dict:
    scope: dict = {}
    exec(compile(textwrap.dedent(source), filename, "exec"), scope)
    return scope


def test_the_users_code_sees_cuda_and_libraries_see_meta(tmp_path):
    user = _compiled_as(str(tmp_path / "train.py"), "def device_of(t):\n    return t.device\n")
    library = _compiled_as(
        "/usr/lib/python3/site-packages/somelib/utils.py", "def device_of(t):\n    return t.device\n"
    )
    with fake_accelerator.fake_node(4) as node:
        x = torch.ones(2).cuda()
        assert user["device_of"](x) == torch.device("cuda", 0)
        assert library["device_of"](x) == torch.device("meta") and x.is_meta
        # torch's own code (a library) builds on the meta device it sees
        assert torch.empty_like(x).is_meta
        node.set_device(3)
        assert user["device_of"](x) == torch.device("cuda", 3)
        # host tensors are what they are, to everyone
        assert user["device_of"](torch.ones(1)) == torch.device("cpu")
    assert user["device_of"](x) == torch.device("meta")  # only while the fake node is active
