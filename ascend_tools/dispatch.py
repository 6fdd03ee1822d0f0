"""What every dispatch-level tool shares (check-ops' trace, capture, shadow, fault injection): the name of an
aten overload and of what a user names an op (``--ops matmul``), whether autograd is running a backward, and
:class:`ModulePath`, the module path of the op being dispatched."""
import re
from typing import Any, Dict, List

import torch
from torch.utils._pytree import tree_flatten

# names a user may give for an op that never reaches dispatch (CompositeImplicitAutograd) -> what does
OP_ALIASES = {
    "matmul": ("mm", "bmm", "addmm", "baddbmm"),
    "linear": ("addmm", "mm", "bmm"),
    "softmax": ("_softmax",),
    "log_softmax": ("_log_softmax",),
    "layer_norm": ("native_layer_norm",),
}


def normalise_op(name: str) -> List[str]:
    """``aten::mm``, ``aten.mm.default``, ``mm`` → ``["mm"]``; ``matmul`` → the ops it runs as."""
    n = name.strip()
    for prefix in ("aten::", "aten."):
        if n.startswith(prefix):
            n = n[len(prefix):]
    if n.endswith(".default"):
        n = n[: -len(".default")]
    return list(OP_ALIASES.get(n, (n,)))


def op_name(func: Any) -> str:
    """``aten::mm`` for a default overload, ``aten::add.Tensor`` otherwise."""
    schema = func._schema
    return schema.name if not schema.overload_name else f"{schema.name}.{schema.overload_name}"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


#: ops that allocate or re-point storage without defining its values (their outputs hold whatever the
#: memory held: statistics of them are noise, NaN included)
UNDEFINED_VALUES = frozenset((
    "empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted",
    "resize_", "resize_as_", "set_",
))  # fmt: skip


def in_backward() -> bool:
    task_id = getattr(torch._C, "_current_graph_task_id", None)
    return task_id is not None and task_id() != -1


class ModulePath:
    """Which module is running: forward through pre/post hooks, backward through
    ``torch.utils.module_tracker`` where this torch has it (2.3+); older torch attributes
    backward ops to the root."""

    _INDEX = re.compile(r"^[^.]+\.?")

    def __init__(self) -> None:
        self._tracker = None
        self._current: Dict[tuple, str] = {}
        try:
            self._tracker = kwargs_aware_tracker()
        except ImportError:  # torch < 2.3
            self._stack: List[str] = []
            self._names: Dict[int, str] = {}
            self._handles: List[Any] = []

    def __enter__(self) -> "ModulePath":
        if self._tracker is not None:
            self._tracker.__enter__()
        else:
            mod = torch.nn.modules.module
            self._handles = [
                mod.register_module_forward_pre_hook(self._push),
                mod.register_module_forward_hook(self._pop),
            ]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._tracker is not None:
            self._tracker.__exit__(*exc)
        else:
            for h in self._handles:
                h.remove()

    def name_modules(self, root: torch.nn.Module) -> None:
        if self._tracker is None:
            self._names = {id(m): n for n, m in root.named_modules()}

    def _push(self, module: torch.nn.Module, _inputs: Any) -> None:
        self._stack.append(self._names.get(id(module), type(module).__name__))

    def _pop(self, _module: torch.nn.Module, _inputs: Any, _output: Any) -> None:
        if self._stack:
            self._stack.pop()

    def current(self) -> str:
        if self._tracker is None:
            return self._stack[-1] if self._stack else ""
        key = tuple(self._tracker.parents)  # runs per op: the answer is cached per set of parents
        path = self._current.get(key)
        if path is None:
            if len(self._current) >= 4096:
                self._current.clear()
            path = self._current[key] = self._innermost(key)
        return path

    def _innermost(self, parents: Any) -> str:
        parents = [p for p in parents if p != "Global"]
        if not parents:
            return ""
        # the tracker names modules "RootClass.child.grandchild"; the innermost is the longest
        return self._INDEX.sub("", max(parents, key=lambda p: (p.count("."), p)))


def kwargs_aware_tracker() -> Any:
    """``torch.utils.module_tracker.ModuleTracker``, made to see tensors passed by keyword.

    The stock tracker leaves a module in backward when the gradients of its *positional* inputs are
    done; a module called with keyword tensors only (Hugging Face: ``self.self_attn(hidden_states=...)``)
    is then never left, and every later backward op is attributed to it. Here the leave-hook is
    registered after the forward, with the keyword inputs included."""
    from torch.autograd.graph import register_multi_grad_hook
    from torch.utils.hooks import RemovableHandle
    from torch.utils.module_tracker import ModuleTracker

    needed = ("_get_mod_name", "_get_append_fn", "_get_pop_fn", "_hooks")
    base = ModuleTracker()
    if not all(hasattr(base, n) for n in needed):
        return base  # another torch's internals: the stock behaviour

    class Tracker(ModuleTracker):
        def _fw_pre_hook(self, mod: Any, _input: Any) -> None:
            self._get_append_fn(self._get_mod_name(mod), False)()

        def _fw_post_hook(self, mod: Any, args: Any, kwargs: Any, output: Any) -> None:  # type: ignore[override]
            name = self._get_mod_name(mod)
            self._get_pop_fn(name, False)()
            for tensors, fn in (((args, kwargs), self._get_pop_fn(name, True)), (output, self._get_append_fn(name, True))):
                flat = [t for t in tree_flatten(tensors)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
                if flat:
                    self._hooks.append(register_multi_grad_hook(flat, fn))

        def __enter__(self) -> "Tracker":
            mod = torch.nn.modules.module
            self._fw_pre_handle: RemovableHandle = mod.register_module_forward_pre_hook(self._fw_pre_hook)
            self._fw_post_handle: RemovableHandle = mod.register_module_forward_hook(self._fw_post_hook, with_kwargs=True)
            return self

    return Tracker()


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
