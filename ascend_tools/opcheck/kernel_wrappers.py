"""Which top-level names of a scanned module wrap CUDA-only code, so that a call of them from another
module is itself a line to port: TinyLlama's ``FusedCrossEntropyLoss()`` (an ``nn.Module`` over an
``autograd.Function`` that calls ``xentropy_cuda_lib``), ``apply_rotary_emb_func = ApplyRotaryEmb.apply``,
GaLore's ``GaLoreAdamW8bit`` (a bitsandbytes ``Optimizer2State`` subclass re-exported by its package).

A name is a wrapper when its own definition (a ``class`` with its bases, an assignment, the ``return``
statements of a ``def``: a function that only does its work with the kernel is a setup step, ported inside
it) holds a CUDA-library error of the scan (a call of an imported wrapper is one), or uses a definition of the same
module that does (one hop: the helper ``autograd.Function`` behind a module or an ``.apply`` alias), or
when it is imported from another module where it is a wrapper (a package ``__init__`` re-exporting it). A model class that reaches the
kernels three definitions down (``GPT`` -> ``Block`` -> ``CausalSelfAttention``) is not: its callers
need no change once the wrapper is ported.
"""

import ast
import bisect
from typing import Dict, Iterable, List, Sequence, Set, Tuple


def top_level_definitions(tree: ast.AST) -> Dict[str, ast.stmt]:
    """Module-level ``def``/``class`` statements and plain-name assignments, by the name they bind."""
    out: Dict[str, ast.stmt] = {}
    for stmt in getattr(tree, "body", []):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = stmt
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
            out[stmt.target.id] = stmt
    return out


class Definitions:
    """What ``kernel_wrappers`` needs of one module: the line spans that hold each top-level definition's
    value (a ``def``'s ``return`` statements, a class's header, class-level statements and protocol methods,
    an assignment) and the names each
    one reads. Built from what the scanner's one visit recorded (``reads``: (line, name) of every name read
    outside a type test such as ``isinstance(m, LLaMAMLP)``; ``returns``: the spans of ``return``
    statements), so the tree is not walked again; every propagation pass asks again."""

    def __init__(self, tree: ast.AST, reads: Sequence[Tuple[int, str]], returns: Sequence[Tuple[int, int]]):
        self.spans: Dict[str, List[Tuple[int, int]]] = {}
        self.used: Dict[str, Set[str]] = {}
        reads = sorted(reads)
        for name, stmt in top_level_definitions(tree).items():
            first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
            last = stmt.end_lineno or stmt.lineno
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):  # a thin wrapper returns it
                self.spans[name] = [(a, b) for a, b in returns if first <= a <= last]
            elif isinstance(stmt, ast.ClassDef):
                self.spans[name] = _class_value_spans(stmt, first)
            else:
                self.spans[name] = [(first, last)]
            parts = self.spans[name] if isinstance(stmt, ast.ClassDef) else [(first, last)]
            self.used[name] = set()
            for a, b in parts:
                lo, hi = bisect.bisect_left(reads, (a, "")), bisect.bisect_right(reads, (b, "\uffff"))
                self.used[name] |= {n for _, n in reads[lo:hi]}


# methods that constructing or using an object runs by protocol: CUDA code in another method is reached
# through an explicit call of that method, where the fix is (llm_qlora's QloraTrainer.load_base_model)
_PROTOCOL_METHODS = frozenset(
    {
        "__init__",
        "__new__",
        "__call__",
        "__enter__",
        "__exit__",
        "__iter__",
        "__next__",
        "forward",
        "backward",
        "step",
        "apply",
    }
)


def _class_value_spans(cls: ast.ClassDef, first: int) -> List[Tuple[int, int]]:
    """A class's header with its bases and decorators, its class-level statements and its protocol methods."""
    header: List[ast.expr] = [*cls.bases, *(k.value for k in cls.keywords)]
    spans = [(first, max([cls.lineno, *(b.end_lineno or b.lineno for b in header)]))]
    for item in cls.body:
        if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) or item.name in _PROTOCOL_METHODS:
            spans.append((item.lineno, item.end_lineno or item.lineno))
    return spans


def kernel_wrappers(defs: Definitions, cuda_lines: Iterable[int], imported: Iterable[str]) -> Set[str]:
    """The wrapper names of one module, given the lines of its CUDA-library errors (``cuda_lines``) and the
    local names it imports that are wrappers where they come from (``imported``)."""
    lines = sorted(set(cuda_lines))
    direct = {name for name, spans in defs.spans.items() if any(a <= x <= b for a, b in spans for x in lines)}
    one_hop = {name for name, used in defs.used.items() if used & (direct - {name})}
    # an imported wrapper called inside a definition is a CUDA error line of its own (source_scan flags
    # the call), so imported names join only as re-exports, not as a hop
    return direct | one_hop | set(imported)
