"""Whether an import at a line of the user's code is guarded: inside a ``try`` whose handler catches
ImportError (or ``ModuleNotFoundError``, ``Exception``, a bare ``except``), or ``with suppress(ImportError)``.

The check-ops child stands in for an unknown missing module only where the ImportError would otherwise stop
the script (``opaque_modules.py``); a guarded import is the script's own optional dependency and keeps
seeing ImportError, as it does without the tool.
"""

import ast
from typing import Dict, List, Tuple

from .source_scan import _catches_import_error

#: file -> the (first, last) line spans whose ImportError is caught
_SPANS: Dict[str, List[Tuple[int, int]]] = {}


def _suppresses_import_error(item: ast.withitem) -> bool:
    call = item.context_expr
    if not isinstance(call, ast.Call):
        return False
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    handler = ast.ExceptHandler(type=ast.Tuple(elts=list(call.args)), name=None, body=[])
    return name == "suppress" and _catches_import_error(handler)


def _guarded_spans(filename: str) -> List[Tuple[int, int]]:
    spans = _SPANS.get(filename)
    if spans is None:
        try:
            with open(filename, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename)
        except (OSError, SyntaxError, ValueError):
            tree = ast.Module(body=[], type_ignores=[])
        spans = _SPANS[filename] = []
        for node in ast.walk(tree):
            body: List[ast.stmt] = []
            if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":  # try* (3.11+): same fields
                if any(_catches_import_error(h) for h in getattr(node, "handlers", [])):
                    body = getattr(node, "body", [])
            elif isinstance(node, ast.With) and any(_suppresses_import_error(i) for i in node.items):
                body = node.body
            if body:
                spans.append((body[0].lineno, max(s.end_lineno or s.lineno for s in body)))
    return spans


def guarded(filename: str, line: int) -> bool:
    """Whether ``line`` of ``filename`` is inside a statement body whose ImportError is caught."""
    return any(first <= line <= last for first, last in _guarded_spans(filename))
