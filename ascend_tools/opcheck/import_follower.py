"""Which local files an import statement runs, found the way Python would find them, without running code.

Search roots, in order: the importing file's directory, the top of its package, the command's working
directory, and each ``sys.path.append/insert(EXPR)`` of the scanned files whose ``EXPR`` evaluates
statically (:func:`static_path`: ``__file__``, string constants, ``os.path.dirname/abspath/realpath/
join/normpath``, ``os.pardir``, ``pathlib.Path(...)`` with ``.parent``, ``.parents[N]``,
``.resolve()``, ``.absolute()``, ``/`` and ``str()``). Directories without ``__init__.py`` are namespace
packages (PEP 420). Site-packages is never followed.
"""

import ast
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

Resolver = Callable[[ast.AST], Optional[str]]  # dotted name of an expression (import aliases applied)
ValueOf = Callable[[Optional[ast.AST]], Optional[ast.AST]]

_PATH_FUNCS: Dict[str, Callable[[str], str]] = {
    "os.path.dirname": os.path.dirname,
    "os.path.abspath": os.path.abspath,
    "os.path.realpath": os.path.abspath,  # no filesystem lookups beyond the tree
    "os.path.normpath": os.path.normpath,
    "os.path.expanduser": os.path.expanduser,
}


def static_path(
    node: Optional[ast.AST], file: str, resolve: Resolver, value_of: ValueOf, depth: int = 0
) -> Optional[str]:
    """The path ``node`` evaluates to in ``file``, or None when it is not a plain path expression."""
    if node is None or depth > 20:
        return None
    node = value_of(node) if isinstance(node, ast.Name) and node.id != "__file__" else node

    def ev(sub: Optional[ast.AST]) -> Optional[str]:
        return static_path(sub, file, resolve, value_of, depth + 1)

    if isinstance(node, ast.Name) and node.id == "__file__":
        return os.path.abspath(file)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and resolve(node) in ("os.pardir", "os.curdir", "os.path.pardir"):
        return os.pardir if node.attr == "pardir" else os.curdir
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # Path / "sub"
        left, right = ev(node.left), ev(node.right)
        return os.path.join(left, right) if left is not None and right is not None else None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = ev(node.value)
        return os.path.dirname(inner) if inner is not None else None
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "parents"
    ):
        inner, index = ev(node.value.value), node.slice
        index = getattr(index, "value", index) if not isinstance(index, ast.Constant) else index
        if inner is None or not isinstance(index, ast.Constant) or not isinstance(index.value, int):
            return None
        for _ in range(index.value + 1):
            inner = os.path.dirname(inner)
        return inner
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute") and not node.args:
        inner = ev(func.value)
        return os.path.abspath(inner) if inner is not None else None
    name = resolve(func) or getattr(func, "id", None)
    args = [ev(a) for a in node.args]
    if any(a is None for a in args):
        return None
    strs = [a for a in args if a is not None]
    if name in _PATH_FUNCS and len(strs) == 1:
        return _PATH_FUNCS[name](strs[0])
    if name == "os.path.join" and strs:
        return os.path.join(*strs)
    if name in ("pathlib.Path", "pathlib.PurePath", "str") and len(strs) == 1:
        return strs[0]
    return None


def is_site_packages(path: str) -> bool:
    parts = os.path.normpath(path).split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts


def package_root(directory: str) -> str:
    """The directory that holds the top regular package containing ``directory`` (itself if none)."""
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def module_files(base: str, dotted: str) -> List[str]:
    """Files executed by importing ``dotted`` from ``base``: each regular package's __init__.py and the
    module; a namespace directory contributes no file but is descended into. [] if the module is not
    under ``base``."""
    files: List[str] = []
    parts = [p for p in dotted.split(".") if p]
    directory = base
    for i, part in enumerate(parts):
        sub = os.path.join(directory, part)
        mod = sub + ".py"
        last = i == len(parts) - 1
        if os.path.isfile(os.path.join(sub, "__init__.py")):
            files.append(os.path.join(sub, "__init__.py"))
            directory = sub
        elif last and os.path.isfile(mod):
            files.append(mod)
            return files
        elif os.path.isdir(sub) and not last:
            directory = sub  # namespace package
        else:
            return files if i else []
    return files


ImportRecord = Tuple[str, int, Tuple[str, ...]]  # (module, level, imported names)


def local_imports(path: str, imports: Sequence[ImportRecord], roots: Sequence[str]) -> List[List[str]]:
    """For each import record of ``path``, the local files it runs ([] when it is not local)."""
    here = os.path.dirname(os.path.abspath(path))
    bases: List[str] = []
    for base in (here, package_root(here), *roots):
        base = os.path.abspath(base)
        if base not in bases and os.path.isdir(base):
            bases.append(base)
    result: List[List[str]] = []
    for module, level, names in imports:
        if level:
            base = here
            for _ in range(level - 1):
                base = os.path.dirname(base)
            candidates = [base]
        else:
            candidates = bases
        found: List[str] = []
        for base in candidates:
            files = module_files(base, module) if module else []
            pkg_dir = os.path.join(base, *module.split(".")) if module else base
            if os.path.isdir(pkg_dir):  # `from pkg import sub` may import the submodule pkg/sub.py
                for name in names:
                    sub, sub_pkg = (
                        os.path.join(pkg_dir, name + ".py"),
                        os.path.join(pkg_dir, name, "__init__.py"),
                    )
                    files += [f for f in (sub, sub_pkg) if os.path.isfile(f)]
            files = [f for f in files if not is_site_packages(f)]
            if files:
                found = files
                break
        result.append(found)
    return result
