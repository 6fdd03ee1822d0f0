"""What every dispatch-level tool shares (check-ops' trace, capture, shadow, fault injection): the name of an
aten overload (the names a user gives are in ``op_names.py``, which needs no torch), whether autograd is running a backward, and
:class:`ModulePath`, the module path of the op being dispatched."""

import contextlib
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import torch

if TYPE_CHECKING:
    from .module_names import ModuleNames


#: a plain tensor's types: what the tools read values from directly (a subclass has its own rules, see
#: ``precision.failopen_mode.subclass_kind``)
PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)

#: how many of the package's own computations are running inside the user's step now (a fused op's tier
#: self-checking on its first call, ``ops/registry.py``): the tools' dispatch modes pass their ops through
#: unrecorded. One count for the process, not per thread: a check lasts milliseconds, once per tier and dtype.
OWN_OPS = [0]


@contextlib.contextmanager
def own_ops() -> Iterator[None]:
    """Ops run inside are the package's own, not the user's (see :data:`OWN_OPS`)."""
    OWN_OPS[0] += 1
    try:
        yield
    finally:
        OWN_OPS[0] -= 1


def op_name(func: Any) -> str:
    """``aten::mm`` for a default overload, ``aten::add.Tensor`` otherwise."""
    schema = func._schema
    return schema.name if not schema.overload_name else f"{schema.name}.{schema.overload_name}"


def written_args(func: Any) -> Tuple[Tuple[int, str], ...]:
    """``(index, name)`` of each argument the op writes (``add_``'s self, ``out=``), from its schema."""
    return tuple(
        (i, a.name)
        for i, a in enumerate(func._schema.arguments)
        if a.alias_info is not None and a.alias_info.is_write
    )


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32`` (cached: capture, shadow and the profiler ask per tensor)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).replace("torch.", "")
    return name


_DTYPE_NAMES: Dict[torch.dtype, str] = {}


#: the autograd engine's current graph task id, -1 outside backward (always -1 on a torch without it)
graph_task_id = getattr(torch._C, "_current_graph_task_id", None) or (lambda: -1)


def in_backward() -> bool:
    return graph_task_id() != -1


_CURRENT_NODE = getattr(torch._C, "_current_autograd_node", None)
_SEQUENCE_NR = getattr(torch.autograd, "_get_sequence_nr", None) or getattr(
    torch._C._autograd, "_get_sequence_nr", None
)
_FORGET_AFTER = 1 << 20  # forward ops remembered at most (a safety net: steps forget them, see forget())


class ModulePath:
    """Which module the op being dispatched runs in.

    Forward: a stack kept by global module pre/post forward hooks. Backward: the module whose forward
    created the autograd node being run. While a forward op is dispatched, autograd has already made its
    node, so ``torch.autograd._get_sequence_nr() - 1`` is that node's sequence number (torch's own
    aot_autograd reads it so); :meth:`current` notes it with the module, and in backward
    ``torch._C._current_autograd_node()._sequence_nr()`` finds it again. Nothing is hooked on tensors and the
    autograd graph is untouched (torch's ``ModuleTracker``, used before, registered multi-grad hooks on every
    module's inputs and outputs: a quarter of an op-level capture's cost, and it lost track of modules
    called with keyword tensors). A tool must call :meth:`current` for every forward op it sees. Torch
    without those two functions: backward ops get the root ("").

    Names come from :meth:`name_modules` (the root is ""). A module without a known name that runs inside
    another (a function Hugging Face's ``kernels`` wraps as a module, such as ``apply_rotary_pos_emb``; a
    module kept in a plain list or dict; a module-level singleton) is transparent: its ops and their backward
    belong to the module that called it, looked up at each call (one instance serves every layer), and so do
    those of its unnamed children. One that runs while no module runs is a root (""), and the modules below
    it are named from it (``module_names.ModuleNames``: a later root that holds an earlier one renames what the
    earlier one named)."""

    def __init__(self, names: Optional["ModuleNames"] = None) -> None:
        from .module_names import ModuleNames

        self._stack: List[str] = []
        self.names = names if names is not None else ModuleNames()
        self._by_seq: Dict[int, str] = {}
        self._handles: List[Any] = []

    def __enter__(self) -> "ModulePath":
        mod = torch.nn.modules.module
        self._handles = [mod.register_module_forward_pre_hook(self._push)]
        try:  # always_call: a forward that raises still leaves the stack
            self._handles.append(mod.register_module_forward_hook(self._pop, always_call=True))
        except TypeError:  # torch without always_call
            self._handles.append(mod.register_module_forward_hook(self._pop))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def name_modules(self, root: torch.nn.Module) -> None:
        self.names.name(root)

    def running(self) -> bool:
        """Whether a module's forward is running now."""
        return bool(self._stack)

    def forget(self) -> None:
        """Drop the forward ops noted so far (a step boundary: their backward has run)."""
        self._by_seq = {}

    def _push(self, module: torch.nn.Module, _inputs: Any) -> None:
        name = self.names.get(module)
        if name is None:  # transparent inside a running module, else a root
            if self._stack:
                name = self._stack[-1]
            else:
                name = self.names.add_root(module)
        self._stack.append(name)

    def _pop(self, _module: torch.nn.Module, _inputs: Any, _output: Any) -> None:
        if self._stack:
            self._stack.pop()

    def current(self) -> str:
        if not self._stack:  # no module's forward runs: backward, or an op outside every module
            node = _CURRENT_NODE() if _CURRENT_NODE is not None else None
            if node is not None:
                return self._by_seq.get(node._sequence_nr(), "")
        # a module's forward runs, in backward too: activation checkpointing runs the forward again there, and the
        # nodes that recomputation makes are noted like the first forward's (before, a reentrant checkpoint's
        # backward ops all went to the root)
        path = self._stack[-1] if self._stack else ""
        if _SEQUENCE_NR is not None:
            seq = _SEQUENCE_NR() - 1
            # the op that made node ``seq`` sees it first; an op after it that made no node leaves it
            if seq not in self._by_seq:
                if len(self._by_seq) >= _FORGET_AFTER:
                    self._by_seq = {}
                self._by_seq[seq] = path
        return path


def flat_tensors(value: Any, out: List[torch.Tensor]) -> None:
    """Append the tensors in ``value`` (nested lists, tuples, dicts, ``ModelOutput``s) to ``out``, in order."""
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            flat_tensors(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            flat_tensors(v, out)
    else:
        # ModelOutput and other containers with tensor attributes
        items = getattr(value, "values", None)
        if callable(items) and hasattr(value, "keys"):
            for v in items():
                flat_tensors(v, out)
