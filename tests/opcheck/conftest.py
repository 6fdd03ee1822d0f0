"""Fixtures shared by the check-ops tests."""

import sys

import pytest

from ascend_tools.opcheck import standins


@pytest.fixture
def finder():
    """The stand-ins' import hook on sys.meta_path for one test; the modules it made are dropped after
    (test_opaque_modules overrides it with the opaque-module hook)."""
    recorder = standins.Recorder()
    hook = standins.StandInFinder(recorder)
    sys.meta_path.append(hook)
    before = set(sys.modules)
    yield recorder
    sys.meta_path.remove(hook)
    for name in set(sys.modules) - before:
        del sys.modules[name]
