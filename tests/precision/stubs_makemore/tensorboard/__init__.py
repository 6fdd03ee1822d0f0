"""A stand-in for tensorboard and the protobuf it needs (not installed in CI), enough for
``torch.utils.tensorboard.SummaryWriter`` to be made and written to: every submodule torch imports
(``tensorboard.compat.proto.event_pb2``, ``google.protobuf.struct_pb2``, ...) exists, and every name in it is a
:class:`Nothing`, which accepts any call and attribute. Nothing is written."""

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "2.20.0"  # torch.utils.tensorboard wants >= 1.15


class Nothing:
    def __init__(self, *_args, **_kwargs):
        pass

    def __call__(self, *_args, **_kwargs):
        return Nothing()

    def __getattr__(self, _name):
        return Nothing()


def _attribute(name):
    if name.startswith("__"):  # a module's own attributes (``__file__``: inspect walks every module)
        raise AttributeError(name)
    return Nothing()


class _Submodules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith((__name__ + ".", "google.protobuf")) or fullname == "google":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _attribute
        return module

    def exec_module(self, module):
        return None


sys.meta_path.insert(0, _Submodules())
