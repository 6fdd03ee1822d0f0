"""The path of every module and parameter a dispatch-level tool sees (``model.layers.3.self_attn.q_proj``,
``model.layers.2.input_layernorm.weight``), with or without the model given.

Given a model (``name(model)``), its ``named_modules``/``named_parameters`` are the names, and they win. Without
one, the first module that runs while no other runs is a *root* (``""``) and everything below it is named
from it. A later root that holds an earlier one renames what the earlier one named: a script that calls
``model.model.layers[0].mlp(x)`` before ``model(...)`` (a warm-up, a shape check) would otherwise leave that
MLP's children named ``down_proj`` for the whole run, and an ``nn.ModuleList`` (iterated, never called) gives
no other chance to learn the ``model.layers.N.`` part. Keys are held weakly (by identity for parameters:
a tensor's ``==`` is elementwise).

A module compiled with ``torch.compile`` is an ``OptimizedModule`` holding the user's module as ``_orig_mod``:
that component is left out of every path (``transformer.h.0.attn``, not ``_orig_mod.transformer.h.0.attn``), so
a compiled run's names are those of the same model uncompiled (a reference run compiled, a target run not) and
``--scope`` prefixes match both; the same for a block compiled on its own (``model.layers.0._orig_mod.mlp``).
"""

import gc
import weakref
from typing import Callable, Dict, Optional

import torch
from torch.utils.weak import WeakIdKeyDictionary

#: the attribute ``torch.compile``'s OptimizedModule keeps the compiled module under
COMPILED_CHILD = "_orig_mod"


def plain_path(path: str) -> str:
    """``path`` without the components a compiled module's wrapper adds (see the module docstring)."""
    if COMPILED_CHILD not in path:
        return path
    return ".".join(part for part in path.split(".") if part != COMPILED_CHILD)


class ModuleNames:
    def __init__(self) -> None:
        self._modules: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()
        # module -> the root it was named from (absent: named from a model given by the caller, final); weakly, as
        # ``_params``
        self._named_by: weakref.WeakKeyDictionary[torch.nn.Module, weakref.ref] = weakref.WeakKeyDictionary()
        self._roots: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
        self._root_paths: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()
        self._models: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
        # Parameter -> (path, weak reference to the root that named it, or None): a strong one would keep every
        # model alive for the capture's life (the root holds the key: a weak key with its value pointing back at it
        # is never freed), a model deleted or replaced inside the capture (``model = torch.load(...)``) too
        self._params = WeakIdKeyDictionary()
        self._missed = WeakIdKeyDictionary()  # Parameters looked up in vain since the last rescan

    def name(self, model: torch.nn.Module) -> None:
        """Name everything below ``model`` from it (``model`` itself is ``""``); these names are final."""
        for path, module in model.named_modules():
            self._modules[module] = plain_path(path)
            self._named_by.pop(module, None)
        self._models.add(model)
        self._name_params(model, None)

    def get(self, module: torch.nn.Module) -> Optional[str]:
        return self._modules.get(module)

    def release_params(self, kept: torch.Tensor, gone: torch.Tensor) -> Callable[[], None]:
        """Let go of the weak references to two tensors about to be swapped (``swap_guard.py``); the function
        returned names ``kept`` again after the swap (the module's parameter: its identity stays, its content is
        ``gone``'s)."""
        name = self._params.pop(kept, None)
        for t in (kept, gone):
            self._missed.pop(t, None)
        self._params.pop(gone, None)

        def name_again() -> None:
            if name is not None:
                self._params[kept] = name

        return name_again

    def __contains__(self, module: torch.nn.Module) -> bool:
        return module in self._modules

    def add_root(self, root: torch.nn.Module) -> str:
        """``root`` runs while no module runs: name what is below it (it stays unnamed itself: the same
        instance may run inside a named module later). Names an earlier root below it gave are replaced.
        Returns the root's own path: ``""``, unless its modules' names would be those of another model's already
        named (a second model beside the first: DPO's reference model, a distillation teacher, an EMA copy):
        then the name the script holds it under (``ref_model``, see :func:`held_as`) or ``root<N>``, and every
        path below it starts with that (``ref_model.model.layers.0.mlp``)."""
        known = self._root_paths.get(root)
        if known is not None:
            return known
        paths = [(plain_path(path), sub) for path, sub in root.named_modules() if sub is not root]
        below_ids = {id(sub) for _path, sub in paths}
        mine = {id(m) for m in self._modules if id(m) in below_ids}  # named by an earlier root this one holds
        taken = {name for m, name in self._modules.items() if id(m) not in mine}
        prefix = self._second_model_path(root) if any(path in taken for path, _sub in paths) else ""
        self._roots.add(root)
        self._root_paths[root] = prefix
        below: Dict[int, str] = {}
        for path, sub in paths:
            path = below[id(sub)] = _join(prefix, path)
            if self._renamable(sub, below):
                self._modules[sub] = path
                self._named_by[sub] = weakref.ref(root)
        self._name_params(root, below, prefix)
        return prefix

    def _second_model_path(self, root: torch.nn.Module) -> str:
        firsts = {name.split(".", 1)[0] for name in self._modules.values()} | set(self._root_paths.values())
        name = held_as(root)
        if name is None or name in firsts:
            name = f"root{len(self._roots) + 1}"
        return name

    def _name_params(self, root: torch.nn.Module, below: Optional[Dict[int, str]], prefix: str = "") -> None:
        """``below`` None: ``root`` is a model given by the caller (final names)."""
        for path, p in root.named_parameters():
            path = _join(prefix, plain_path(path))
            old = self._params.get(p)
            old_root = old[1]() if old is not None and old[1] is not None else None
            if below is None:
                self._params[p] = (path, None)
            elif old is None or (old[1] is not None and (old_root is None or id(old_root) in below)):
                self._params[p] = (path, weakref.ref(root))

    def _renamable(self, sub: torch.nn.Module, below: Dict[int, str]) -> bool:
        if sub not in self._modules:
            return True
        by = self._named_by.get(sub)
        root = by() if by is not None else None
        return by is not None and (root is None or id(root) in below)

    def param(self, p: torch.Tensor) -> Optional[str]:
        """The path of parameter ``p`` (``model.norm.weight``), None when no known module holds it."""
        found = self._params.get(p)
        if found is None and isinstance(p, torch.nn.Parameter) and p not in self._missed:
            # a Parameter made after its module was named (load_state_dict(assign=True), a module's
            # weight replaced): look again, once per such tensor
            self._missed[p] = True
            for model in list(self._models):
                self._name_params(model, None)
            for root in list(self._roots):
                self._name_params(root, {id(m): "" for m in root.modules()}, self._root_paths.get(root, ""))
            found = self._params.get(p)
        return found[0] if found is not None else None


def held_as(obj: object) -> Optional[str]:
    """The name a script holds ``obj`` under: a key of a dict that refers to it, an object's attributes (a trainer's
    ``self.ref_model``) or a module's globals (``teacher = ...``); public identifiers only, the first in sorted
    order where there are several (the same in every run). None where no dict holds it."""
    names = {
        key
        for ref in gc.get_referrers(obj)
        for key, value in _items(ref)
        if value is obj and isinstance(key, str) and key.isidentifier() and not key.startswith("_")
    }
    return min(names) if names else None


def _items(ref: object) -> list:
    """A referrer's names and values: a dict's, or an object's attributes (Python 3.11+ keeps an instance's
    attributes without a dict object, and the referrer is then the instance)."""
    if isinstance(ref, dict):
        return list(ref.items())
    try:
        attrs = object.__getattribute__(ref, "__dict__")
    except Exception:  # no attributes (a list, a frame, a cell)
        return []
    return list(attrs.items()) if isinstance(attrs, dict) else []


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else prefix or path
