"""Opaque stand-ins for unknown missing modules the user's code imports, so the one-step trace can go on.

A module that no finder satisfies and that is not a CUDA-only package ``standins.py`` knows (``import openai``
in a utils file, ``import nlp``, a project module that is not there) stops the script with
ModuleNotFoundError. :class:`OpaqueFinder`, last on ``sys.meta_path`` in the check-ops child, answers such
an import with an :class:`OpaqueModule` when three things hold: the import comes from the user's own code
(an installed library's optional-import probe keeps seeing ImportError), it is an import (not a
``find_spec`` probe), and no ``try``/``except ImportError`` of the user's on the stack would catch it
(``import_guard.py``): only where the ImportError would otherwise stop the trace. Each is a finding at the
user's ``file:line``.

Every attribute of an opaque module is opaque: a lowercase one is a submodule and a function (calling it
gives an :class:`OpaqueValue`), a capitalised one a class whose instances are opaque values. An opaque
value's attributes, calls and items are opaque values again; when one reaches a torch op or is read as a
number (``int()``, ``float()``, an index), the trace stops with :class:`OpaqueValueUsed`, which names the
module the value came from.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .import_guard import guarded
from .user_code import installed

RULE = "missing-module"
MESSAGE = (
    "{}: not installed here; stood in for by an opaque module so the trace could continue: "
    "install it for a faithful trace"
)


class OpaqueValueUsed(BaseException):
    """A value from an opaque module reached a torch op, or was read as a number: the trace cannot go on with
    it. A BaseException, so the script's ``except Exception`` does not hide it."""


def _stop(origin: str, where: str) -> OpaqueValueUsed:
    return OpaqueValueUsed(
        f"a value from {origin} (not installed here, stood in for by an opaque module) {where}: "
        f"install {origin.split('.')[0]} to trace past it"
    )


class _OpaqueClass(type):
    def __getattr__(cls, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return OpaqueValue(cls._origin)


class OpaqueValue(metaclass=_OpaqueClass):
    """What an opaque module's functions and classes give: anything done with it gives another one."""

    _origin = ""

    def __init__(self, origin: str = "", *args: Any, **kwargs: Any) -> None:
        # a subclass made by an opaque module is called with the user's arguments: its origin is its own
        self._origin = type(self)._origin or origin

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return OpaqueValue(self._origin)

    def __call__(self, *args: Any, **kwargs: Any) -> "OpaqueValue":
        return OpaqueValue(self._origin)

    def __getitem__(self, key: Any) -> "OpaqueValue":
        return OpaqueValue(self._origin)

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __enter__(self) -> "OpaqueValue":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<opaque value from {self._origin}>"

    def __index__(self) -> int:
        raise _stop(self._origin, "was read as a number")

    __int__ = __index__

    def __float__(self) -> float:
        raise _stop(self._origin, "was read as a number")

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        values = [*args, *(kwargs or {}).values()]
        origin = next((v._origin for v in values if isinstance(v, OpaqueValue)), cls._origin)
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        raise _stop(origin, f"reached torch's {name}")


class OpaqueModule(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: List[str] = []  # a package: its submodules import too
        self.__file__ = f"<ascend-doctor opaque stand-in for {name}>"

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr[:1].isupper():
            value: Any = _OpaqueClass(
                attr, (OpaqueValue,), {"_origin": self.__name__, "__module__": self.__name__}
            )
        else:
            value = importlib.import_module(f"{self.__name__}.{attr}")
        setattr(self, attr, value)
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> OpaqueValue:
        return OpaqueValue(self.__name__)


def _importing_user_frame() -> Optional[Any]:
    """The user's frame whose import statement reached the finder; None for a ``find_spec`` probe (no
    ``_find_and_load`` on the way) or an import an installed library made."""
    frame: Any = sys._getframe(2)
    loading = False
    while frame is not None:
        code = frame.f_code
        if "importlib" in code.co_filename or code.co_filename == __file__:
            loading = loading or code.co_name == "_find_and_load_unlocked"
        else:
            return frame if loading and not installed(code.co_filename) else None
        frame = frame.f_back
    return None


def _caught_by_the_script(frame: Any) -> bool:
    """Whether a ``try``/``except ImportError`` (or ``suppress``) of the user's on the stack catches it."""
    while frame is not None:
        name = frame.f_code.co_filename
        if not installed(name) and guarded(name, frame.f_lineno):
            return True
        frame = frame.f_back
    return False


class OpaqueFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on ``sys.meta_path``, after ``standins.StandInFinder``: the unknown missing modules."""

    def __init__(self) -> None:
        self.sites: Dict[str, Tuple[str, int]] = {}  # top-level module -> where the user first imported it

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not isinstance(sys.modules.get(fullname.rpartition(".")[0]), OpaqueModule):
            frame = _importing_user_frame()
            if frame is None or _caught_by_the_script(frame):
                return None
            self.sites.setdefault(fullname, (frame.f_code.co_filename, frame.f_lineno))
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> Any:
        return OpaqueModule(spec.name)

    def exec_module(self, module: Any) -> None:
        return None

    def findings(self) -> List[Dict[str, Any]]:
        return [
            {
                "file": file,
                "line": line,
                "col": 0,
                "rule": RULE,
                "severity": "warning",
                "message": MESSAGE.format(module),
                "suggestion": f"pip install the package that provides {module} (or put the module on the path)",
            }
            for module, (file, line) in self.sites.items()
        ]
