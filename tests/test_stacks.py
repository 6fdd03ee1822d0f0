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
