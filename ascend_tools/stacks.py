"""Deduplicated Python stacks of the user code that issued an op or a collective.

A record keeps only a stack id; each distinct stack is written once. Library frames (torch, numpy, this
package, the standard library) are left out, so the stack is the user's own call path.
"""

import importlib.util
import os
import sys
import sysconfig
from typing import Any, Dict, List, Optional, Tuple

STACK_DEPTH = 16
# torch's directory (found, not imported: compare shortens a dump's stack paths without torch) and this
# package's (this module sits at its top level)
_TORCH_FILE = getattr(importlib.util.find_spec("torch"), "origin", None) or os.path.join("<no torch>", "_")
# numpy's too: its frames issue torch ops only through the protocols it calls on a tensor (a tensor used as an
# index calls __index__, an .item(): nanoGPT's memmap slices by torch.randint's values), for the user's line
_NUMPY_FILE = getattr(importlib.util.find_spec("numpy"), "origin", None) or os.path.join("<no numpy>", "_")
_SKIP_DIRS = tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in (__file__, _TORCH_FILE, _NUMPY_FILE))
_EXAMPLES = os.path.join(_SKIP_DIRS[0], "examples") + os.sep  # ascend_tools.examples stands for user code
_STDLIB = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep
_SITE = os.sep + "site-packages" + os.sep


def is_library(filename: str) -> bool:
    """Whether a frame's ``co_filename`` is torch, numpy, this package (not its examples), the standard library or
    no file of the user's (``<frozen runpy>``, ``<string>``)."""
    if filename.startswith("<"):
        return True
    path = os.path.abspath(filename)
    return (path.startswith(_SKIP_DIRS) and not path.startswith(_EXAMPLES)) or (
        path.startswith(_STDLIB) and _SITE not in path
    )


def user_site(frame: Optional[Any] = None) -> str:
    """``file:line in function`` of the innermost frame outside torch, the standard library and this
    package, from ``frame`` (default: the caller's) outwards: the model code that issued the op. Empty in
    backward (the autograd engine calls in). Per code object the answer is cached: shadow asks per op."""
    frame = frame if frame is not None else sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        where = _SITES.get(code, "")
        if where == "":
            where = _SITES[code] = (
                None
                if is_library(code.co_filename)
                else f"{short_path(os.path.abspath(code.co_filename))}:{{}} in {code.co_name}"
            )
        if where is not None:
            return where.format(frame.f_lineno)
        frame = frame.f_back
    return ""


_SITES: Dict[Any, Optional[str]] = {}  # code object -> "file:{} in function", or None for a library frame


def short_path(path: str) -> str:
    """Relative to the working directory when under it, else from the package dir in site-packages."""
    rel = os.path.relpath(path)
    if not rel.startswith(".."):
        return rel
    return path.split(_SITE, 1)[1] if _SITE in path else path


class StackTable:
    """Stack ids, cached by the two innermost user frames (code object and bytecode offset) and the caller's
    ``context``: a hit costs a walk to those frames only; a miss walks up to ``depth`` frames. Not thread-safe by
    design: a lost race gives two ids for one stack, never a wrong one. Two calls from the same two frames reached
    through different outer frames share the first one's stack unless their contexts differ (the capture's is
    the grad mode: an evaluation under ``no_grad`` and the training forward run the same model code, and every
    record of nanoGPT's and nanochat's first training forward named their evaluation loop as its caller).

    Code objects are looked up by ``id``: hashing a code object hashes its contents (~0.2 us, a dozen
    times per op). The table keeps every code object it has classified alive (``_codes``), so an id it
    holds cannot be reused by another code object."""

    def __init__(self, depth: int = STACK_DEPTH) -> None:
        self.depth = depth
        self._sites: Dict[tuple, int] = {}
        self._stacks: Dict[tuple, int] = {}
        self._lib_code: Dict[int, bool] = {}  # id(code) -> a library frame (see is_library)
        self._codes: List[Any] = []  # the code objects of _lib_code, held
        self.new: List[Tuple[int, List[str]]] = []  # (id, frames outermost first) not yet written

    def _skip(self, code: Any) -> bool:
        skip = self._lib_code.get(id(code))
        if skip is None:
            self._codes.append(code)
            skip = self._lib_code[id(code)] = is_library(code.co_filename)
        return skip

    def stack_id(self, depth: int = 1, context: Any = None) -> int:
        """Id of the stack from ``depth`` frames up (1: the caller; its user frames). The walk is inlined (no
        call per frame): it runs for every op a capture records, which skips its own frames by ``depth``
        (``sys._getframe(depth)`` does not build the frame objects it skips)."""
        frame: Optional[Any] = sys._getframe(depth)
        start = frame
        lib = self._lib_code
        inner = None
        site: tuple = ()
        while frame is not None:
            code = frame.f_code
            skip = lib.get(id(code))
            if skip is None:
                skip = self._skip(code)
            if not skip:
                if inner is None:
                    inner = (id(code), frame.f_lasti)
                else:
                    site = (inner[0], inner[1], id(code), frame.f_lasti)
                    break
            frame = frame.f_back
        else:
            site = inner or ()
        key = (site, context)
        sid = self._sites.get(key)
        if sid is None:
            sid = self._sites[key] = self._full_stack_id(start)
        return sid

    def _full_stack_id(self, frame: Optional[Any]) -> int:
        key: List[Tuple[Any, int]] = []
        while frame is not None and len(key) < self.depth:
            code = frame.f_code
            if not self._skip(code):
                key.append((code, frame.f_lineno))
            frame = frame.f_back
        tkey = tuple(key)
        sid = self._stacks.get(tkey)
        if sid is None:
            sid = self._stacks[tkey] = len(self._stacks)
            frames = [
                f"{short_path(os.path.abspath(c.co_filename))}:{ln} in {c.co_name}" for c, ln in reversed(key)
            ]
            self.new.append((sid, frames))
        return sid

    def drain(self) -> List[Tuple[int, List[str]]]:
        """The stacks seen since the last drain."""
        out, self.new = self.new, []
        return out
