"""stacks: frames without a file of the user's (``<string>``, ``<frozen ...>``) are never the user's site."""

import sys

import torch

from ascend_tools.stacks import StackTable, is_library, user_site


def test_is_library():
    assert is_library("<frozen runpy>") and is_library("<string>") and is_library(torch.__file__)
    assert not is_library(__file__)


def test_frames_of_exec_strings_are_skipped():
    ns = {"user_site": user_site, "table": StackTable()}
    exec(compile("site = user_site()\nsid = table.stack_id()", "<string>", "exec"), ns)
    assert (
        ns["site"].endswith(" in test_frames_of_exec_strings_are_skipped") and "test_stacks.py:" in ns["site"]
    )
    frames = ns["table"].drain()[0][1]
    assert not any("<string>" in f for f in frames) and frames[-1].endswith(
        " in test_frames_of_exec_strings_are_skipped"
    )


def _stack_of_caller(table):
    """Asks for its caller's stack, as the capture's dispatch mode asks for the stack of the op's caller."""
    return table.stack_id(2)


def _own_stack(table):
    return table.stack_id()


def test_stack_id_depth_starts_at_the_callers_frame():
    table = StackTable()
    sid = _stack_of_caller(table)
    line = sys._getframe().f_lineno - 1
    own = _own_stack(table)
    stacks = dict(table.drain())
    assert stacks[sid][-1].endswith(
        f"test_stacks.py:{line} in test_stack_id_depth_starts_at_the_callers_frame"
    )
    assert not any("_stack_of_caller" in f for f in stacks[sid])
    assert own != sid and stacks[own][-1].endswith(" in _own_stack")  # depth 1: the helper itself


def test_an_op_numpy_issues_is_sited_at_the_users_line(tmp_path):
    """A torch tensor used as an index of a numpy memmap calls ``__index__``, an ``.item()`` issued from
    numpy's ``memmap.__getitem__`` (nanoGPT's ``data[i : i + block_size]``, ``i`` from ``torch.randint``): the
    site is the user's line, not numpy's."""
    import numpy as np
    from torch.utils._python_dispatch import TorchDispatchMode

    sites = []

    class Sites(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            sites.append(user_site(sys._getframe(1)))  # from its caller on, as the tools' modes ask
            return func(*args, **(kwargs or {}))

    data = np.memmap(tmp_path / "tokens.bin", dtype=np.uint16, mode="w+", shape=(10,))
    data[:] = np.arange(10)
    i = torch.tensor(3)
    with Sites():
        window = data[i : i + 2]
    line = sys._getframe().f_lineno - 1
    assert window.tolist() == [3, 4]
    want = f"tests/test_stacks.py:{line} in {sys._getframe().f_code.co_name}"
    assert sites and all(s == want for s in sites), sites
    assert is_library(np.__file__)
