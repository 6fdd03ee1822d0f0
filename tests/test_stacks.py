"""stacks: frames without a file of the user's (``<string>``, ``<frozen ...>``) are never the user's site."""

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
