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


GET_DEVICE = """
import torch

x = torch.ones(2, 4).cuda()
torch.cuda.set_device(x.get_device())  # -1 would be refused
model = torch.nn.Linear(4, 4).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
h = model(x)
if h.get_device() == -1:  # "on the CPU?", as many repos test it
    h = torch.sigmoid(h)
else:
    h = torch.tanh(h)  # the accelerator path only
h.sum().backward()
opt.step()
"""


def test_get_device_answers_the_accelerator_index_to_the_users_code(tmp_path):
    (tmp_path / "get_device.py").write_text(GET_DEVICE)
    proc, report = check_ops(tmp_path, "python", str(tmp_path / "get_device.py"))
    assert report is not None, proc.stderr
    assert report["trace"]["complete"], report["trace"]["stopped"]
    ops = ops_of(report)
    assert "aten::tanh" in ops and "aten::sigmoid" not in ops


def test_get_device_follows_the_same_rule_as_device(tmp_path):
    """N (the current device) to the user's code, as torch.device("cuda", N).index; -1 to libraries and
    for host tensors, as torch says for the CPU and meta."""
    query = "def get(t):\n    return t.get_device(), torch.get_device(t)\n"
    device = "def index(t):\n    return t.device.index\n"
    user = _compiled_as(str(tmp_path / "train.py"), "import torch\n" + query + device)
    library = _compiled_as("/usr/lib/python3/site-packages/somelib/utils.py", "import torch\n" + query)
    with fake_accelerator.fake_node(4) as node:
        x = torch.ones(2).cuda()
        assert user["get"](x) == (0, 0)
        node.set_device(2)
        assert user["get"](x) == (2, 2) and user["index"](x) == 2
        assert library["get"](x) == (-1, -1)
        assert user["get"](torch.ones(1)) == (-1, -1)
    assert user["get"](x) == (-1, -1)  # only while the fake node is active
