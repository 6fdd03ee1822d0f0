"""Static scan of a training script for CUDA-isms: the AST half of ``ascend-doctor check-ops``.

One :class:`_Scanner` (an ``ast.NodeVisitor``) resolves import aliases (``import torch as T``,
``from torch import cuda``, ``from torch.cuda.amp import autocast as ac``) to dotted names and looks
each name up in the rule table of :mod:`ascend_tools.opcheck.source_rules`; the handlers there decide
what to report. :func:`scan_target` also scans the local modules the target imports (resolved
relative to the file's directory and its package root, never site-packages), each file once.
"""

import ast
import dataclasses
import os
import re
from collections import deque
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ascend_tools.errors import InputError
from ascend_tools.opcheck.command_inputs import scan_command_inputs
from ascend_tools.opcheck.source_finding import SourceFinding, as_report_finding
from ascend_tools.opcheck.source_rules import RULE_DOCS, Handler, Hit, Site, lookup
from ascend_tools.opcheck.training_options import OPTION_RULES

__all__ = ["RULE_DOCS", "SourceFinding", "as_report_finding", "scan_command", "scan_file", "scan_target"]


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
_BACKEND_NAME = re.compile(r"(^|_)backend$", re.IGNORECASE)
_DEVICE_NAME = re.compile(r"(^|_)device(_type)?$|^map_location$", re.IGNORECASE)


def _only_logs(handler: ast.ExceptHandler) -> bool:
    """The handler only logs, passes or re-raises: the imported names stay undefined, so a later use
    raises NameError. Anything else (an assignment, another import, a def) is taken as a fallback."""
    return all(isinstance(stmt, (ast.Expr, ast.Pass, ast.Raise)) for stmt in handler.body)


def _is_fallback(handler: ast.ExceptHandler) -> bool:
    return _catches_import_error(handler) and not _only_logs(handler)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    for t in types:
        name = t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "")
        if name in _IMPORT_ERRORS:
            return True
    return False


def _field_default(value: ast.AST) -> ast.AST:
    """``field(default=X)`` -> X (a dataclass field); anything else as it is."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) == "field":
        return next((kw.value for kw in value.keywords if kw.arg == "default"), value)
    return value


def _chain(node: ast.AST) -> Optional[List[str]]:
    """``a.b.c`` -> ["a", "b", "c"]; None for anything that is not a plain attribute chain."""
    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class _Scanner(ast.NodeVisitor):
    """Walks one module: resolves names, builds Sites, asks the rule table, collects findings."""

    def __init__(self, path: str, source: str):
        self.path = path
        self.lines = source.splitlines()
        self.aliases: Dict[str, Tuple[str, bool]] = {}  # local name -> (dotted name, guarded import)
        self.guard = 0  # depth of try-bodies with an ImportError handler that is a real fallback
        self.branch: Optional[str] = None  # why the current if-body only runs on CUDA
        self.scopes: List[Dict[str, ast.AST]] = [{}]  # name -> value last assigned, module then functions
        self.compare = 0  # depth of comparisons
        self.findings: List[SourceFinding] = []
        self.imports: List[Tuple[str, int, Tuple[str, ...]]] = []  # (module, level, names) to follow

    # ------------------------------------------------------------------ resolution and reporting

    def resolve(self, node: ast.AST) -> Optional[str]:
        parts = _chain(node)
        if not parts or parts[0] not in self.aliases:
            return None
        return ".".join([self.aliases[parts[0]][0], *parts[1:]])

    def value_of(self, node: Optional[ast.AST]) -> Optional[ast.AST]:
        """A bare name's last value assigned in the enclosing scopes (file order, one hop); else ``node``."""
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return scope[node.id]
        return node

    def _guarded_name(self, node: ast.AST) -> bool:
        parts = _chain(node)
        if not parts:
            return False
        return self.aliases.get(parts[0], ("", False))[1]

    def _col(self, lineno: int, col_offset: int) -> int:
        """ast's col_offset counts UTF-8 bytes; report characters, 1-based."""
        if 0 < lineno <= len(self.lines):
            return len(self.lines[lineno - 1].encode("utf-8")[:col_offset].decode("utf-8", "replace")) + 1
        return col_offset + 1

    def emit(self, site: Site, handler: Optional[Handler] = None, prefix_only: bool = False) -> None:
        handler = handler or lookup(site.name, prefix_only=prefix_only)
        if handler is None:
            return
        site.in_compare = self.compare > 0
        site.branch = self.branch
        site.value_of = self.value_of
        for hit in handler(site):
            self._add(hit, hit.node or site.node, at_method=site.name.startswith("<method>."))

    def _add(self, hit: Hit, node: ast.AST, at_method: bool = False) -> None:
        line = getattr(node, "lineno", 1)
        col = self._col(line, getattr(node, "col_offset", 0))
        # point a method call at the method name: `x.cuda()` -> column of `cuda`
        if (
            at_method
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.end_lineno
        ):
            line = node.func.end_lineno
            col = self._col(line, node.func.end_col_offset or 0) - len(node.func.attr)
        self.findings.append(
            SourceFinding(self.path, line, col, hit.rule, hit.severity, hit.message, hit.suggestion)
        )

    # ------------------------------------------------------------------ imports

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_is_fallback(h) for h in node.handlers)
        self.guard += guarded
        for stmt in node.body:
            self.visit(stmt)
        self.guard -= guarded
        for part in (node.handlers, node.orelse, node.finalbody):
            for child in part:
                self.visit(child)

    visit_TryStar = visit_Try  # Python 3.11+

    def visit_Import(self, node: ast.Import) -> None:
        guarded = self.guard > 0
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = (alias.name, guarded)
            else:
                head = alias.name.split(".")[0]
                self.aliases[head] = (head, guarded)
            self.imports.append((alias.name, 0, ()))
            self.emit(Site(alias.name, "import", node, guarded=guarded), prefix_only=True)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        guarded = self.guard > 0
        module = node.module or ""
        names = tuple(a.name for a in node.names)
        self.imports.append((module, node.level, names))
        if node.level:  # relative import: local code, scanned by scan_target; names stay unresolved
            return
        groups: Dict[Handler, str] = {}  # one finding per rule handler, not per imported name
        for alias in node.names:
            full = module if alias.name == "*" else f"{module}.{alias.name}"
            if alias.name != "*":
                self.aliases[alias.asname or alias.name] = (full, guarded)
            handler = lookup(full, prefix_only=True)
            if handler is not None and handler not in groups:
                groups[handler] = module if lookup(module, prefix_only=True) is handler else full
        for handler, name in groups.items():
            self.emit(Site(name, "import", node, guarded=guarded, names=names), handler=handler)

    # ------------------------------------------------------------------ expressions

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = self.resolve(func)
        if name is not None:
            self.emit(Site(name, "call", node, guarded=self._guarded_name(func)))
        elif isinstance(func, ast.Attribute):
            self.emit(Site(f"<method>.{func.attr}", "call", node))
            self.visit(func.value)
        else:
            self.visit(func)
        for kw in node.keywords:
            if kw.arg:
                self.emit(Site(f"<kwarg>.{kw.arg}", "kwarg", kw.value, value=kw.value))
        for arg in node.args:
            self.visit(arg)
        for kw in node.keywords:
            self.visit(kw.value)

    def _visit_chain(self, node: ast.AST, ctx: ast.expr_context) -> bool:
        name = self.resolve(node)
        if name is None:
            return False
        kind = "store" if isinstance(ctx, ast.Store) else "ref"
        self.emit(Site(name, kind, node, guarded=self._guarded_name(node)))
        return True

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not self._visit_chain(node, node.ctx):
            self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self._visit_chain(node, node.ctx)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        """``os.environ["CUDA_HOME"]`` read (writes go through _assign)."""
        key = node.slice.value if isinstance(node.slice, ast.Index) else node.slice  # type: ignore[attr-defined]
        if (
            isinstance(node.ctx, ast.Load)
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and self.resolve(node.value) == "os.environ"
        ):
            self.emit(Site("os.environ", "load", node, key=key.value))
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        outer = self.branch
        self.branch = self._cuda_only_branch(node) or outer
        for stmt in node.body:
            self.visit(stmt)
        self.branch = outer
        for stmt in node.orelse:
            self.visit(stmt)

    def _cuda_only_branch(self, node: ast.If) -> Optional[str]:
        """Why ``node``'s body runs on CUDA only: a device-type test (``x.device.type == "cuda"``,
        ``x.is_cuda``) always; ``torch.cuda.is_available()`` when an else branch is the other path."""
        for sub in ast.walk(node.test):
            if isinstance(sub, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value == "cuda" for c in (sub.left, *sub.comparators)
            ):
                return "taken only on a CUDA device: on NPU the other path runs"
            if isinstance(sub, ast.Attribute) and sub.attr == "is_cuda":
                return "taken only for CUDA tensors: on NPU the other path runs"
            if (
                node.orelse
                and isinstance(sub, ast.Call)
                and self.resolve(sub.func) == "torch.cuda.is_available"
            ):
                return "taken only when torch.cuda.is_available(): the else branch runs on NPU without transfer_to_npu"
        return None

    def visit_Compare(self, node: ast.Compare) -> None:
        self.compare += 1
        self.generic_visit(node)
        self.compare -= 1

    # ------------------------------------------------------------------ statements

    def _assign(self, targets: Iterable[ast.AST], value: Optional[ast.AST]) -> None:
        for target in targets:
            if isinstance(target, ast.Subscript) and self.resolve(target.value) == "os.environ":
                key = target.slice
                if isinstance(key, ast.Index):  # Python 3.8 AST shape
                    key = key.value  # type: ignore[attr-defined]
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    self.emit(Site("os.environ", "setitem", target, key=key.value, value=value))
            ident = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if not ident or value is None:
                continue
            if isinstance(target, ast.Name):
                self.scopes[-1][ident] = value
            if _DEVICE_NAME.search(ident):
                self.emit(Site("<device-var>", "device-var", value, value=value))
            if _BACKEND_NAME.search(ident):
                self.emit(Site("<backend-var>", "device-var", value, value=value))
            if (
                ident in OPTION_RULES
            ):  # `tf32: bool = True`, `optim: str = field(default="paged_adamw_32bit")`
                default = _field_default(value)
                self.emit(Site(f"<kwarg>.{ident}", "kwarg", default, value=default))

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assign(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assign([node.target], node.value)
        self.generic_visit(node)

    def _visit_function(self, node) -> None:
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        for arg, default in pairs:
            self.emit(Site(f"<kwarg>.{arg.arg}", "kwarg", default, value=default))
        self.scopes.append({})
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function


def _parse(path: str) -> Tuple[str, ast.AST]:
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        return source, ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise InputError(f"{path}:{exc.lineno or 0}: syntax error: {exc.msg}") from None


def _scan(path: str) -> _Scanner:
    source, tree = _parse(path)
    scanner = _Scanner(path, source)
    scanner.visit(tree)
    return scanner


def _dedup(findings: Iterable[SourceFinding]) -> List[SourceFinding]:
    seen: Set[Tuple] = set()
    out = []
    for f in findings:
        key = (f.file, f.line, f.col, f.rule, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return sorted(out, key=lambda f: (f.file, f.line, f.col, f.rule, f.message))


def scan_file(path) -> List[SourceFinding]:
    """Findings of one file, sorted by (line, col). A syntax error raises InputError(path:line)."""
    return _dedup(_scan(os.fspath(path)).findings)


# ---------------------------------------------------------------------------- local imports


def _is_site_packages(path: str) -> bool:
    parts = os.path.normpath(path).split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts


def _package_root(directory: str) -> str:
    """The directory that holds the top package containing ``directory`` (itself if not a package)."""
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def _module_files(base: str, dotted: str) -> List[str]:
    """Files executed by importing ``dotted`` from ``base``: each package's __init__.py and the module."""
    files: List[str] = []
    parts = [p for p in dotted.split(".") if p]
    directory = base
    for i, part in enumerate(parts):
        pkg_init = os.path.join(directory, part, "__init__.py")
        mod = os.path.join(directory, part + ".py")
        if os.path.isfile(pkg_init):
            files.append(pkg_init)
            directory = os.path.join(directory, part)
        elif os.path.isfile(mod) and i == len(parts) - 1:
            files.append(mod)
            return files
        else:
            return files if i else []
    return files


def _local_imports(path: str, imports: List[Tuple[str, int, Tuple[str, ...]]]) -> List[str]:
    here = os.path.dirname(os.path.abspath(path))
    bases = []
    for base in (here, _package_root(here)):
        if base not in bases:
            bases.append(base)
    found: List[str] = []
    for module, level, names in imports:
        if level:
            base = here
            for _ in range(level - 1):
                base = os.path.dirname(base)
            candidates = [(base, module)]
        else:
            candidates = [(b, module) for b in bases]
        for base, mod in candidates:
            files = _module_files(base, mod) if mod else []
            pkg_dir = os.path.join(base, *mod.split(".")) if mod else base
            # `from pkg import sub` may import the submodule pkg/sub.py
            if os.path.isdir(pkg_dir):
                for name in names:
                    sub = os.path.join(pkg_dir, name + ".py")
                    sub_pkg = os.path.join(pkg_dir, name, "__init__.py")
                    files += [f for f in (sub, sub_pkg) if os.path.isfile(f)]
            files = [f for f in files if not _is_site_packages(f)]
            if files:
                found += files
                break
    return found


def scan_target(path, follow_imports: bool = True) -> List[SourceFinding]:
    """Findings of ``path`` and (with ``follow_imports``) of the local Python files it imports,
    transitively, each file once; sorted by (file, line, col). A syntax error in the target raises
    InputError; one in an imported file becomes a ``syntax-error`` finding."""
    target = os.fspath(path)
    scanner = _scan(target)
    findings = list(scanner.findings)
    if follow_imports:
        seen = {os.path.realpath(target)}
        queue = deque((target, f) for f in _local_imports(target, scanner.imports))
        while queue:
            importer, file = queue.popleft()
            real = os.path.realpath(file)
            if real in seen:
                continue
            seen.add(real)
            shown = os.path.normpath(
                os.path.join(
                    os.path.dirname(target),
                    os.path.relpath(os.path.abspath(file), os.path.dirname(os.path.abspath(target))),
                )
            )
            try:
                sub = _scan(file)
            except InputError as exc:
                match = re.search(r":(\d+): syntax error: (.*)$", str(exc))
                line, msg = (int(match.group(1)), match.group(2)) if match else (1, str(exc))
                findings.append(
                    SourceFinding(
                        shown,
                        max(line, 1),
                        1,
                        "syntax-error",
                        "warning",
                        f"imported by {importer} but does not parse ({msg}); not scanned",
                        "fix the syntax error to have it scanned",
                    )
                )
                continue
            findings += [SourceFinding(shown, *_rest(f)) for f in sub.findings]
            queue.extend((shown, f) for f in _local_imports(file, sub.imports))
    return _dedup(findings)


def _rest(f: SourceFinding) -> Tuple[int, int, str, str, str, str]:
    return f.line, f.col, f.rule, f.severity, f.message, f.suggestion


def scan_command(
    script_path: str, script_args: Sequence[str], cwd: str, launcher_args: Sequence[str] = ()
) -> List[SourceFinding]:
    """Findings of a launch command: the script and the local files it imports (``scan_target``), its
    TrainingArguments-style flags (``command line:argN``), and the DeepSpeed JSON / accelerate YAML /
    HfArgumentParser config files that the script's arguments or the launcher's ``launcher_args``
    (``accelerate launch --config_file``) name, read relative to ``cwd``. Sorted by (file, line, col)."""
    script = os.path.join(cwd, script_path)  # script_path itself when it is absolute
    shown = [
        dataclasses.replace(f, file=os.path.relpath(f.file, cwd)) if _inside(f.file, cwd) else f
        for f in scan_target(script)
    ]
    return _dedup([*shown, *scan_command_inputs(script_args, cwd, launcher_args)])


def _inside(path: str, directory: str) -> bool:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(directory))
    return not rel.startswith(os.pardir)
