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
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, cast

from ascend_tools.errors import InputError
from ascend_tools.opcheck.command_inputs import command_options, scan_command_inputs
from ascend_tools.opcheck.cuda_type_branch import cuda_type_test
from ascend_tools.opcheck.import_follower import ImportRecord, local_imports, static_path
from ascend_tools.opcheck.kernel_wrappers import Definitions, kernel_wrappers
from ascend_tools.opcheck.option_conditions import argparse_default, option_reads, options_passed, resolve
from ascend_tools.opcheck.source_finding import SourceFinding, as_report_finding
from ascend_tools.opcheck.source_rules import CPP_EXTENSION_MODULE, RULE_DOCS, Handler, Hit, Site, lookup
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


def _is_main_guard(test: ast.AST) -> bool:
    """``__name__ == "__main__"``."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _requires_cuda(test: ast.AST) -> bool:
    """The test holds only for CUDA tensors/devices: ``x.is_cuda`` or ``... == "cuda"`` in it, not negated."""
    negated = {id(n) for u in ast.walk(test) if isinstance(u, ast.UnaryOp) for n in ast.walk(u.operand)}
    for sub in ast.walk(test):
        if id(sub) in negated:
            continue
        if isinstance(sub, ast.Attribute) and sub.attr == "is_cuda":
            return True
        if (
            isinstance(sub, ast.Compare)
            and all(isinstance(op, ast.Eq) for op in sub.ops)
            and any(isinstance(c, ast.Constant) and c.value == "cuda" for c in (sub.left, *sub.comparators))
        ):
            return True
    return False


def _asserted_present(test: ast.AST) -> List[str]:
    """The names ``assert`` requires to be set: ``assert f``, ``assert f is not None``, and-ed."""
    parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
    out = []
    for part in parts:
        if (
            isinstance(part, ast.Compare)
            and len(part.ops) == 1
            and isinstance(part.ops[0], ast.IsNot)
            and isinstance(part.comparators[0], ast.Constant)
            and part.comparators[0].value is None
        ):
            part = part.left
        if isinstance(part, ast.Name):
            out.append(part.id)
    return out


def _rejects_non_cuda(test: ast.AST) -> bool:
    """The test holds for an NPU device: ``device.type != "cuda"`` (alone or and-ed with other tests, such as
    ``!= "xpu"``), ``device.type not in ("cuda", ...)``, ``not x.is_cuda``."""
    parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
    for part in parts:
        if isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.Not):
            if isinstance(part.operand, ast.Attribute) and part.operand.attr == "is_cuda":
                return True
        elif isinstance(part, ast.Compare) and len(part.ops) == 1:
            sides = (part.left, part.comparators[0])
            if isinstance(part.ops[0], ast.NotEq) and any(
                isinstance(x, ast.Constant) and x.value == "cuda" for x in sides
            ):
                return True
            options = part.comparators[0]
            if (
                isinstance(part.ops[0], ast.NotIn)
                and isinstance(options, (ast.Tuple, ast.List))
                and any(isinstance(e, ast.Constant) and e.value == "cuda" for e in options.elts)
            ):
                return True
    return False


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
        # module-level imports anywhere in the file (module_imports): a function defined above
        # `if __name__ == "__main__": from apex import amp` reads the global when it runs
        self.late_aliases: Dict[str, Tuple[str, bool]] = {}
        self.guard = 0  # depth of try-bodies with an ImportError handler that is a real fallback
        self.branch: Optional[str] = None  # why the current if-body only runs on CUDA
        self.scopes: List[Dict[str, ast.AST]] = [{}]  # name -> value last assigned, module then functions
        self.compare = 0  # depth of comparisons
        self.findings: List[SourceFinding] = []
        self.imports: List[ImportRecord] = []  # (module, level, names) to follow
        self.import_lines: List[Tuple[ast.stmt, Dict[str, str]]] = []  # per record: statement, local -> name
        self.sys_paths: List[str] = []  # sys.path.append/insert arguments that evaluate statically
        self.name_calls: Dict[str, List[ast.Call]] = {}  # f(...) call sites by local name
        self.functions: Dict[str, Tuple[int, int]] = {}  # top-level def name -> (first, last line)
        self.bodies: List[Tuple[int, int]] = []  # (first, last line) of every function and method body
        self.reads: List[Tuple[int, str]] = []  # (line, name) of each name read outside a type test
        self.returns: List[Tuple[int, int]] = []  # (first, last line) of each return statement
        self.type_args = 0  # depth of the tested types of isinstance/issubclass calls
        self.conditions: List[ast.AST] = []  # enclosing if-tests (or their negation) that read options
        self.conditional: Dict[int, Tuple[ast.AST, ...]] = {}  # index in findings -> the options' conditions
        self.option_defaults: Dict[str, object] = {}  # dataclass fields and argparse options with a constant
        self.option_results: Dict[str, ast.AST] = {}  # name -> the call given the options object it came from
        self.owner: Optional[str] = None  # the top-level function being visited
        self.import_owners: List[Optional[str]] = []  # per import record: its top-level function, if any
        self.in_main = False  # inside `if __name__ == "__main__":` (does not run when imported)
        self.called: Set[str] = set()  # names called outside the __main__ block (f() and x.f())
        self.main_called: Set[str] = set()  # names called inside it (they run for the target only)
        self.tree: ast.AST = ast.Module(body=[], type_ignores=[])  # set by _scan

    # ------------------------------------------------------------------ resolution and reporting

    def _alias(self, name: str) -> Optional[Tuple[str, bool]]:
        return self.aliases.get(name) or self.late_aliases.get(name)

    def _bind(self, name: str, target: Tuple[str, bool]) -> None:
        self.aliases[name] = target

    def resolve(self, node: ast.AST) -> Optional[str]:
        parts = _chain(node)
        alias = self._alias(parts[0]) if parts else None
        if not parts or alias is None:
            return None
        return ".".join([alias[0], *parts[1:]])

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
        return (self._alias(parts[0]) or ("", False))[1]

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
        conditions = list(self.conditions)
        if site.kind == "kwarg" and site.value is not None and option_reads(site.value):
            conditions.append(site.value)  # load_in_8bit=model_args.quantization_bit == 8
        for hit in handler(site):
            if conditions and hit.severity == "error":  # option_conditions.resolve decides after the scan
                self.conditional[len(self.findings)] = tuple(conditions)
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
                self._bind(alias.asname, (alias.name, guarded))
            else:
                head = alias.name.split(".")[0]
                self._bind(head, (head, guarded))
            self.imports.append((alias.name, 0, ()))
            self.import_lines.append((node, {}))
            self.import_owners.append(self.owner)
            self.emit(Site(alias.name, "import", node, guarded=guarded), prefix_only=True)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        guarded = self.guard > 0
        module = node.module or ""
        names = tuple(a.name for a in node.names)
        self.imports.append((module, node.level, names))
        self.import_lines.append((node, {a.asname or a.name: a.name for a in node.names}))
        self.import_owners.append(self.owner)
        if node.level:  # relative import: local code, scanned by scan_target; names stay unresolved
            return
        groups: Dict[Handler, str] = {}  # one finding per rule handler, not per imported name
        for alias in node.names:
            full = module if alias.name == "*" else f"{module}.{alias.name}"
            if alias.name != "*":
                self._bind(alias.asname or alias.name, (full, guarded))
            handler = lookup(full, prefix_only=True)
            if handler is not None and handler not in groups:
                groups[handler] = module if lookup(module, prefix_only=True) is handler else full
        for handler, name in groups.items():
            self.emit(Site(name, "import", node, guarded=guarded, names=names), handler=handler)

    # ------------------------------------------------------------------ expressions

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = self.resolve(func)
        if isinstance(func, ast.Name):
            self.name_calls.setdefault(func.id, []).append(node)
        if isinstance(func, (ast.Name, ast.Attribute)):
            (self.main_called if self.in_main else self.called).add(
                getattr(func, "id", getattr(func, "attr", ""))
            )
        if name in ("sys.path.append", "sys.path.insert") and node.args:
            path = static_path(node.args[-1], self.path, self.resolve, self.value_of)
            if path is not None:
                self.sys_paths.append(path)
        if isinstance(func, ast.Attribute) and func.attr == "add_argument":
            self._argparse_backend(node)
            default = argparse_default(node)
            if default is not None:
                self.option_defaults.setdefault(*default)
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
        type_test = getattr(func, "id", None) in ("isinstance", "issubclass")  # a test, like a comparison
        self.compare += type_test
        for i, arg in enumerate(node.args):
            tested_type = type_test and i > 0
            self.type_args += tested_type
            self.visit(arg)
            self.type_args -= tested_type
        self.compare -= type_test
        for kw in node.keywords:
            self.visit(kw.value)

    def _argparse_backend(self, call: ast.Call) -> None:
        """``parser.add_argument("--dist-backend", default="nccl")``: the option's default is a backend
        variable's value, as ``backend = "nccl"`` is."""
        flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        default = next((kw.value for kw in call.keywords if kw.arg == "default"), None)
        if default is not None and any(_BACKEND_NAME.search(f.lstrip("-").replace("-", "_")) for f in flags):
            self.emit(Site("<backend-var>", "device-var", default, value=default))

    def visit_Assert(self, node: ast.Assert) -> None:
        """``assert x.is_cuda`` / ``assert x.device.type == "cuda"``: false for NPU tensors; ``assert
        flash_attn_varlen_func is not None`` after an ImportError fallback that set it to None."""
        if _requires_cuda(node.test):
            self.emit(Site("<assert-cuda>", "assert", node))
        for name in _asserted_present(node.test):
            alias = self._alias(name)
            if alias is None or not alias[1]:  # only a guarded import can have fallen back
                continue
            handler = lookup(alias[0], prefix_only=True)
            hits = list(handler(Site(alias[0], "import", node))) if handler else []
            if hits and hits[0].rule.startswith("lib-") and hits[0].severity == "error":
                msg = (
                    f"asserts that {name} ({alias[0]}) imported, but on NPU its ImportError fallback ran: "
                    "AssertionError"
                )
                self._add(Hit(hits[0].rule, "error", msg, hits[0].suggestion), node)
        self.generic_visit(node)

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
        if isinstance(node.ctx, ast.Load) and not self.type_args:
            self.reads.append((node.lineno, node.id))
        self._visit_chain(node, node.ctx)

    def visit_Return(self, node: ast.Return) -> None:
        self.returns.append((node.lineno, node.end_lineno or node.lineno))
        self.generic_visit(node)

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
        if node.body and isinstance(node.body[0], ast.Raise) and _rejects_non_cuda(node.test):
            self.emit(Site("<raise-unless-cuda>", "assert", node))  # `if device.type != "cuda": raise`
        cuda_type = cuda_type_test(node.test)
        if cuda_type is not None:  # `if device.type == "cuda":`, at the comparison
            self.emit(Site("<cuda-type-branch>", "branch", cuda_type, value=node))
        outer, outer_main = self.branch, self.in_main
        self.branch = self._cuda_only_branch(node) or outer
        self.in_main = outer_main or _is_main_guard(node.test)
        # `if model_args.use_flash_attention:`, or `if optimizer_cls.__name__ == "Adam8bit":` where
        # `optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args)`
        derived = [
            self.option_results[n.id]
            for n in ast.walk(node.test)
            if isinstance(n, ast.Name) and n.id in self.option_results
        ]
        condition = node.test if option_reads(node.test) else next(iter(derived), None)
        by_option = condition is not None
        self.conditions += [condition] if condition is not None else []
        for stmt in node.body:
            self.visit(stmt)
        self.branch, self.in_main = outer, outer_main
        if by_option:  # the else branch runs when the option does not select the body
            self.conditions[-1] = ast.UnaryOp(op=ast.Not(), operand=cast(ast.expr, self.conditions[-1]))
        for stmt in node.orelse:
            self.visit(stmt)
        if by_option:
            self.conditions.pop()

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
        if value is not None and options_passed(value):
            for target in targets:  # `cls = f(args)`, `cls, kwargs = f(args)`: not `self.x = f(args)`
                for name in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                    if isinstance(name, ast.Name):
                        self.option_results[name.id] = value
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
                if self._builds_cuda_extension(value):  # later `ident.forward(...)` calls the kernels
                    self.aliases[ident] = (f"{CPP_EXTENSION_MODULE}.{ident}", False)
            if _DEVICE_NAME.search(ident):
                self.emit(Site("<device-var>", "device-var", value, value=value))
            if _BACKEND_NAME.search(ident):
                self.emit(Site("<backend-var>", "device-var", value, value=value))
            if (
                ident in OPTION_RULES
            ):  # `tf32: bool = True`, `optim: str = field(default="paged_adamw_32bit")`
                default = _field_default(value)
                if isinstance(default, ast.Constant):  # `load_in_4bit = args.x` is no setting of its own
                    self.emit(Site(f"<kwarg>.{ident}", "kwarg", default, value=default))

    def _builds_cuda_extension(self, value: ast.AST) -> bool:
        if not isinstance(value, ast.Call):
            return False
        name = self.resolve(value.func)
        if name not in ("torch.utils.cpp_extension.load", "torch.utils.cpp_extension.load_inline"):
            return False
        handler = lookup(name)
        site = Site(name, "call", value, value_of=self.value_of)
        return handler is not None and any(True for _ in handler(site))

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assign(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assign([node.target], node.value)
        default = _field_default(node.value) if node.value is not None else None
        if isinstance(node.target, ast.Name) and isinstance(default, ast.Constant):  # a dataclass field
            self.option_defaults.setdefault(node.target.id, default.value)
        self.generic_visit(node)

    def _visit_function(self, node) -> None:
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        for arg, default in pairs:
            self.emit(Site(f"<kwarg>.{arg.arg}", "kwarg", default, value=default))
        self.bodies.append((node.body[0].lineno, node.end_lineno or node.lineno))
        top = len(self.scopes) == 1
        if top:
            self.functions[node.name] = (node.lineno, node.end_lineno or node.lineno)
            self.owner = node.name
        self.scopes.append({})
        self.generic_visit(node)
        self.scopes.pop()
        if top:
            self.owner = None

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


def module_imports(tree: ast.AST) -> Dict[str, Tuple[str, bool]]:
    """Local name -> (dotted name, guarded) of the imports outside every def and class body, wherever they
    sit in the file (under ``if``/``try``/``with``): the statements at module level only, not a full walk."""
    out: Dict[str, Tuple[str, bool]] = {}

    def visit(stmts: Iterable[ast.stmt], guarded: bool) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    head = a.name.split(".")[0]
                    out[a.asname or head] = (a.name if a.asname else head, guarded)
            elif isinstance(stmt, ast.ImportFrom) and not stmt.level:
                for a in stmt.names:
                    if a.name != "*":
                        out[a.asname or a.name] = (f"{stmt.module or ''}.{a.name}", guarded)
            elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":  # try* (3.11+): same fields
                t = cast(ast.Try, stmt)
                visit(t.body, guarded or any(_is_fallback(h) for h in t.handlers))
                for part in (*(h.body for h in t.handlers), t.orelse, t.finalbody):
                    visit(part, guarded)
            elif isinstance(stmt, (ast.If, ast.With, ast.For, ast.While)):
                visit(stmt.body, guarded)
                visit(getattr(stmt, "orelse", []), guarded)

    visit(getattr(tree, "body", []), False)
    return out


def _scan(path: str) -> _Scanner:
    """One parse and one visit of ``path``; the module-level imports are read first from the top-level
    statements alone."""
    source, tree = _parse(path)
    scanner = _Scanner(path, source)
    scanner.late_aliases = module_imports(tree)
    scanner.visit(tree)
    scanner.findings += _failing_constructions(scanner, tree)
    scanner.tree = tree
    return scanner


_LOOPS_AND_BRANCHES = (ast.If, ast.Try, ast.For, ast.While, ast.With, ast.AsyncFor, ast.AsyncWith)


def _failing_constructions(sc: _Scanner, tree: ast.AST) -> List[SourceFinding]:
    """Constructions, elsewhere in the file, of a class whose ``__init__`` fails on NPU in a statement that
    always runs (BELLE's LlamaAttention builds FlashSelfAttention, whose ``__init__`` asserts the flash-attn
    import that fell back to None): each is an error, as a call of a failing function is. Calls from other
    files are kernel_wrappers' (the class is a wrapper there)."""
    errors = [f for f in sc.findings if f.severity == "error" and f.rule.startswith(("lib-", "cuda-"))]
    out = []
    for cls in getattr(tree, "body", []):
        init = next(
            (s for s in getattr(cls, "body", []) if isinstance(s, ast.FunctionDef) and s.name == "__init__"),
            None,
        )
        if not isinstance(cls, ast.ClassDef) or init is None:
            continue
        spans = [
            (s.lineno, s.end_lineno or s.lineno) for s in init.body if not isinstance(s, _LOOPS_AND_BRANCHES)
        ]
        cause = next((f for f in errors if any(a <= f.line <= b for a, b in spans)), None)
        for call in sc.name_calls.get(cls.name, []) if cause else []:
            if cls.lineno <= call.lineno <= (cls.end_lineno or cls.lineno) or cause is None:
                continue
            out.append(
                SourceFinding(
                    sc.path,
                    call.lineno,
                    sc._col(call.lineno, call.col_offset),
                    cause.rule,
                    "error",
                    f"{cls.name}() runs {cls.name}.__init__, which fails on NPU (line {cause.line}: "
                    f"{cause.message.split(':')[0]})",
                    f"build {cls.name} only where its kernel exists (e.g. behind the option that selects it), "
                    "or port its __init__",
                )
            )
    return out


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
    scanner = _scan(os.fspath(path))
    return _dedup(_by_options(scanner.findings, scanner, scanner.option_defaults, {}))


# ---------------------------------------------------------------------------- local imports

MAX_FILES = 300  # local files one scan follows
MAX_DEPTH = 12  # import hops from the target


def _shown(target: str, file: str) -> str:
    """``file`` as a path relative to the target's directory, spelled from the target's own path."""
    here = os.path.dirname(os.path.abspath(target))
    return os.path.normpath(
        os.path.join(os.path.dirname(target), os.path.relpath(os.path.abspath(file), here))
    )


def _syntax_finding(shown: str, importer: str, exc: InputError) -> SourceFinding:
    match = re.search(r":(\d+): syntax error: (.*)$", str(exc))
    line, msg = (int(match.group(1)), match.group(2)) if match else (1, str(exc))
    return SourceFinding(
        shown,
        max(line, 1),
        1,
        "syntax-error",
        "warning",
        f"imported by {importer} but does not parse ({msg}); not scanned",
        "fix the syntax error to have it scanned",
    )


class _Followed:
    """One scanned file of a scan_target run: its scanner, findings and the files each import runs."""

    def __init__(self, shown: str, scanner: _Scanner):
        self.shown = shown
        self.scanner = scanner
        self.findings = [dataclasses.replace(f, file=shown) for f in scanner.findings]
        self.resolved: List[List[str]] = [[] for _ in scanner.imports]
        self.wrappers: Set[str] = set()  # top-level names that wrap CUDA-only code (kernel_wrappers)
        self.definitions = Definitions(scanner.tree, scanner.reads, scanner.returns)
        self.reported: Set[Tuple[int, int]] = set()  # (line, col offset) of the findings _propagate added

    def module_errors(self) -> List[SourceFinding]:
        """Error findings outside any function or method body: they fail when the file is imported (a class
        body runs then, its methods' bodies do not: lit-llama's EmptyInitOnDevice imports its quantization
        module inside __init__)."""
        spans = self.scanner.bodies
        return [
            f for f in self.findings if f.severity == "error" and not any(a <= f.line <= b for a, b in spans)
        ]


def _propagate(files: Dict[str, _Followed], order: List[str]) -> None:
    """An import of a local module that fails on NPU is itself an error at the import line; so is a call
    of a function imported from a module that itself imports a CUDA-only library (FastChat's
    ``from ...flash_attn_monkey_patch import replace_...`` then ``replace_...()``), and a call of a name
    that wraps CUDA-only code (kernel_wrappers), even from a module that imports cleanly. Passes repeat,
    deepest files first, until none adds a finding: import order is no topological order (a sibling
    imported first may fail only through a module found later)."""
    while sum(_propagate_pass(files[real], files) for real in reversed(order)):
        pass


def _propagate_pass(importer: _Followed, files: Dict[str, _Followed]) -> int:
    """One importer's share of a _propagate pass; returns how many findings it added."""
    sc = importer.scanner
    imported_wrappers: Set[str] = set()
    added = len(importer.findings)

    def report(node: ast.AST, finding: SourceFinding) -> None:
        key = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
        if key not in importer.reported:
            importer.reported.add(key)
            importer.findings.append(finding)

    for (stmt, names), targets in zip(sc.import_lines, importer.resolved):
        for target_real in (os.path.realpath(t) for t in targets):
            module = files.get(target_real)
            if module is None or module is importer:
                continue
            # a module that imports a CUDA-only library unguarded (a monkey-patch module), or a local module
            # that fails so, fails at this import; a module whose own code needs porting is reported there
            errors = [f for f in module.module_errors() if f.rule.startswith("lib-")]
            direct = [f for f in errors if (f.line, f.col - 1) not in module.reported]
            if errors:
                first = errors[0]
                report(
                    stmt,
                    SourceFinding(
                        importer.shown,
                        stmt.lineno,
                        stmt.col_offset + 1,
                        first.rule,
                        "error",
                        f"imports {module.shown}, which fails on NPU when imported "
                        f"({first.file}:{first.line}: {first.message.split(':')[0]})",
                        f"drop this import on NPU, or fix {module.shown} first",
                    ),
                )
            for local, name in names.items():
                if name in module.wrappers:
                    imported_wrappers.add(local)
                for call in sc.name_calls.get(local, []):
                    if direct and name in module.scanner.functions:
                        report(
                            call,
                            _call_finding(importer, call, direct[0], f"{local}() comes from {module.shown}"),
                        )
                    elif name in module.wrappers and _cuda_errors(module.findings):
                        cause = _cuda_errors(module.findings)[0]
                        what = f"{local}() wraps CUDA-only code of {module.shown}"
                        report(call, _call_finding(importer, call, cause, what))
    importer.wrappers = kernel_wrappers(
        importer.definitions, [f.line for f in _cuda_errors(importer.findings)], imported_wrappers
    )
    return len(importer.findings) - added


def _cuda_errors(findings: Iterable[SourceFinding]) -> List[SourceFinding]:
    return [f for f in findings if f.severity == "error" and f.rule.startswith(("lib-", "cuda-extension"))]


def _call_finding(importer: _Followed, call: ast.Call, cause: SourceFinding, what: str) -> SourceFinding:
    return SourceFinding(
        importer.shown,
        call.lineno,
        call.col_offset + 1,
        cause.rule,
        "error",
        f"{what}, which uses CUDA-only code ({cause.file}:{cause.line})",
        'skip or replace this call on NPU (e.g. HF attn_implementation="sdpa" / '
        "torch_npu.npu_fusion_attention instead of a flash-attn monkey patch; torch ops for a fused kernel)",
    )


def scan_target(
    path,
    follow_imports: bool = True,
    cwd: Optional[str] = None,
    options: Optional[Mapping[str, object]] = None,
) -> List[SourceFinding]:
    """Findings of ``path`` and (with ``follow_imports``) of the local Python files it imports,
    transitively (at most MAX_FILES files, MAX_DEPTH hops), each file once; sorted by (file, line,
    col). Imports resolve from the importer's directory, its package root, ``cwd`` and the scanned
    files' static ``sys.path`` additions. A syntax error in the target raises InputError; one in an
    imported file becomes a ``syntax-error`` finding. An error on a path that an option selects is
    judged with ``options`` (the launch command's) over the defaults the scanned files declare
    (option_conditions)."""
    target = os.fspath(path)
    roots: List[str] = [cwd] if cwd else []
    files: Dict[str, _Followed] = {}
    order: List[str] = []
    extra: List[SourceFinding] = []
    queue = deque([(target, "", 0)])  # (file, importer shown, depth)
    # an import inside a function runs when the function is called: followed once some scanned file
    # calls that name (outside an imported module's __main__ block, which does not run on import)
    deferred: List[Tuple[str, str, int, List[str]]] = []  # (function, importer shown, depth, files)
    called: Set[str] = set()
    while queue or any(d[0] in called for d in deferred):
        for item in [d for d in deferred if d[0] in called]:
            deferred.remove(item)
            queue.extend((f, item[1], item[2]) for f in item[3])
        while queue and len(files) < MAX_FILES:
            file, importer, depth = queue.popleft()
            real = os.path.realpath(file)
            if real in files:
                continue
            shown = _shown(target, file)
            try:
                scanner = _scan(file)
            except InputError as exc:
                if not importer:
                    raise
                extra.append(_syntax_finding(shown, importer, exc))
                continue
            followed = files[real] = _Followed(shown, scanner)
            order.append(real)
            called |= scanner.called | (scanner.main_called if not importer else set())
            base = cwd or os.path.dirname(os.path.abspath(target))
            roots += [os.path.join(base, p) for p in scanner.sys_paths]
            if follow_imports and depth < MAX_DEPTH:
                followed.resolved = local_imports(file, scanner.imports, roots)
                for owner, fs in zip(scanner.import_owners, followed.resolved):
                    if owner is None or not importer:  # the target's own functions are its program
                        queue.extend((f, shown, depth + 1) for f in fs)
                    elif fs:
                        deferred.append((owner, shown, depth + 1, fs))
        if len(files) >= MAX_FILES:
            break
    defaults: Dict[str, object] = {}
    for real in order:
        defaults = {**files[real].scanner.option_defaults, **defaults}  # the first declaration wins
    for real in order:
        files[real].findings = _by_options(files[real].findings, files[real].scanner, defaults, options or {})
    if follow_imports:
        _propagate(files, order)
    return _dedup([f for real in order for f in files[real].findings] + extra)


def _by_options(
    findings: List[SourceFinding],
    scanner: _Scanner,
    defaults: Mapping[str, object],
    command: Mapping[str, object],
) -> List[SourceFinding]:
    """``findings`` (in the scanner's order) with the option-selected errors judged by the options' values."""
    return [
        resolve(f, scanner.conditional[i], defaults, command) if i in scanner.conditional else f
        for i, f in enumerate(findings)
    ]


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
        for f in scan_target(script, cwd=cwd, options=command_options(script_args, cwd))
    ]
    return _dedup([*shown, *scan_command_inputs(script_args, cwd, launcher_args)])


def _inside(path: str, directory: str) -> bool:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(directory))
    return not rel.startswith(os.pardir)
