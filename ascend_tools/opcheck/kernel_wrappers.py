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
from typing import Dict, Iterable, List, Set, Tuple, Union


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


def _names_used(stmt: ast.stmt) -> Set[str]:
    """Names read in ``stmt``, leaving out type tests (``isinstance(m, LLaMAMLP)`` in an init-weights hook
    uses no kernel)."""
    tests = {
        id(n)
        for call in ast.walk(stmt)
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("isinstance", "issubclass")
        for arg in call.args[1:]
        for n in ast.walk(arg)
    }
    return {
        n.id
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in tests
    }


def kernel_wrappers(tree: ast.AST, cuda_lines: Iterable[int], imported: Iterable[str]) -> Set[str]:
    """The wrapper names of one module, given the lines of its CUDA-library errors (``cuda_lines``) and the
    local names it imports that are wrappers where they come from (``imported``)."""
    lines = sorted(set(cuda_lines))
    defs = top_level_definitions(tree)

    def spans(stmt: ast.stmt) -> List[Tuple[int, int]]:
        nodes: List[Union[ast.stmt, ast.expr]]
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nodes = [n for n in ast.walk(stmt) if isinstance(n, ast.Return)]  # a thin wrapper returns it
        else:
            nodes = [stmt, *getattr(stmt, "decorator_list", [])]
        return [(n.lineno, n.end_lineno or n.lineno) for n in nodes]

    def holds_cuda(stmt: ast.stmt) -> bool:
        return any(a <= line <= b for a, b in spans(stmt) for line in lines)

    direct = {name for name, stmt in defs.items() if holds_cuda(stmt)}
    one_hop = {name for name, stmt in defs.items() if _names_used(stmt) & (direct - {name})}
    # an imported wrapper called inside a definition is a CUDA error line of its own (source_scan flags
    # the call), so imported names join only as re-exports, not as a hop
    return direct | one_hop | set(imported)
