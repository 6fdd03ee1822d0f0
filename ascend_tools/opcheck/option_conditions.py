"""CUDA-only code that a command-line or config option selects: ``if model_args.use_flash_attention:``,
``elif args.optim == "adamw_bnb_8bit":``, ``load_in_8bit=model_args.quantization_bit == 8``.

Such a path runs only when the option asks for it, so its errors are warnings that name the option, unless
the option's value selects it: the launch command's ``--flag`` (or the config file it names), else the
option's default where the scanned source declares one (a dataclass field, ``parser.add_argument``,
``cfg.get("name", default)``). A condition that cannot be evaluated statically stays an error when the
command sets one of its options (the user chose it), else it is a warning.

An *option* is an attribute read on an object whose name says it holds parsed arguments (``args``,
``model_args``, ``self.args``, ``cfg``, ``opts`` ...), or ``cfg.get("name")``.
"""

import ast
import dataclasses
import operator
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ascend_tools.opcheck.source_finding import SourceFinding
from ascend_tools.opcheck.training_options import truthy

__all__ = ["Unknown", "argparse_default", "evaluate", "option_reads", "options_passed", "resolve"]

_OPTIONS_OBJECT = re.compile(
    r"^(args|opt|opts|options|cfg|conf|hparams|flags|hps)$|_(args|arguments|cfg|opts)$"
)


class Unknown:
    """A value the scan cannot know (an enum member, a call's result)."""


UNKNOWN = Unknown()


def _options_object(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return bool(_OPTIONS_OBJECT.search(name))


def _option_name(node: ast.AST) -> Optional[str]:
    """``args.bits`` / ``self.args.optim`` -> the option; ``cfg.get("compile", False)`` -> "compile"."""
    if isinstance(node, ast.Attribute) and _options_object(node.value):
        return node.attr
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and _options_object(node.func.value)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def option_reads(expr: ast.AST) -> List[str]:
    """The options ``expr`` reads, in order, once each."""
    out: List[str] = []
    for node in ast.walk(expr):
        name = _option_name(node)
        if name is not None and name not in out:
            out.append(name)
    return out


def options_passed(node: ast.AST) -> Optional[str]:
    """``Trainer.get_optimizer_cls_and_kwargs(self.args)``: a call given the options object whole, whose
    result (``optimizer_cls``) a later test reads; its label for messages, else None."""
    if not isinstance(node, ast.Call):
        return None
    args = [*node.args, *(k.value for k in node.keywords)]
    if any(isinstance(a, (ast.Name, ast.Attribute)) and _options_object(a) for a in args):
        return f"the options passed to {ast.unparse(node.func)}()"
    return None


def argparse_default(call: ast.Call) -> Optional[Tuple[str, object]]:
    """``parser.add_argument("--quantization-bit", type=int, default=8)`` -> ("quantization_bit", 8); a
    ``store_true`` flag defaults to False, ``store_false`` to True. None when the default is not a constant."""
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    long = next((f for f in flags if f.startswith("--")), None)
    if long is None:
        return None
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    dest = kw.get("dest")
    name = str(dest.value) if isinstance(dest, ast.Constant) else long[2:].replace("-", "_")
    if "default" in kw:
        default = kw["default"]
        return (name, default.value) if isinstance(default, ast.Constant) else None
    action = kw.get("action")
    if isinstance(action, ast.Constant) and action.value in ("store_true", "store_false"):
        return name, action.value == "store_false"
    return name, None


_COMPARE: Dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def _like(value: object, other: object) -> object:
    """A command-line string read as the type it is compared with (``--quantization_bit 8`` vs ``8``)."""
    if not isinstance(value, str) or isinstance(other, str):
        return value
    try:
        if isinstance(other, bool):
            return truthy(value)
        if isinstance(other, (int, float)):
            return type(other)(value)
    except ValueError:
        pass
    if value.lower() in ("none", "null") and other is None:
        return None
    return value


_STR_METHODS = ("lower", "upper", "strip", "casefold")


def evaluate(expr: ast.AST, values: Mapping[str, object]) -> object:
    """``expr``'s value with the options' ``values`` substituted, or UNKNOWN."""
    name = _option_name(expr)
    if name is not None:
        if name in values:
            return values[name]
        if isinstance(expr, ast.Call) and len(expr.args) > 1:  # cfg.get("compile", False)
            return evaluate(expr.args[1], values)
        return UNKNOWN
    if isinstance(expr, ast.Constant):
        return expr.value
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr in _STR_METHODS:
        inner = evaluate(expr.func.value, values)  # args.optimizer.lower() == "adam8bit"
        return getattr(inner, expr.func.attr)() if isinstance(inner, str) and not expr.args else UNKNOWN
    if isinstance(expr, (ast.Tuple, ast.List, ast.Set)):
        items = [evaluate(e, values) for e in expr.elts]
        return UNKNOWN if any(isinstance(i, Unknown) for i in items) else items
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
        inner = evaluate(expr.operand, values)
        return inner if isinstance(inner, Unknown) else not _truth(inner)
    if isinstance(expr, ast.BoolOp):
        parts = [evaluate(v, values) for v in expr.values]
        known = [_truth(p) for p in parts if not isinstance(p, Unknown)]
        decisive = isinstance(expr.op, ast.Or)  # True decides an `or`, False an `and`
        if decisive in known:
            return decisive
        return UNKNOWN if len(known) < len(parts) else not decisive
    if isinstance(expr, ast.Compare):
        left = evaluate(expr.left, values)
        for op, right_node in zip(expr.ops, expr.comparators):
            right = evaluate(right_node, values)
            fn = _COMPARE.get(type(op))
            if fn is None or isinstance(left, Unknown) or isinstance(right, Unknown):
                return UNKNOWN
            try:
                if not fn(_like(left, right), _like(right, left)):
                    return False
            except TypeError:
                return UNKNOWN
            left = right
        return True
    return UNKNOWN


def _truth(value: object) -> bool:
    return truthy(value) if isinstance(value, str) else bool(value)


def _flag(name: str) -> str:
    return f"--{name}"


def resolve(
    finding: SourceFinding,
    conditions: Sequence[ast.AST],
    defaults: Mapping[str, object],
    command: Mapping[str, object],
) -> SourceFinding:
    """``finding`` (an error on a path that ``conditions`` select) as the options decide: kept an error
    when the command or the defaults select the path, else a warning naming the option."""
    names: List[str] = []
    for cond in conditions:
        names += [n for n in option_reads(cond) if n not in names]
    values = {**defaults, **command}
    results = [evaluate(c, values) for c in conditions]
    given: Set[str] = {n for n in names if n in command}
    labels = [_flag(n) for n in names] + [p for p in map(options_passed, conditions) if p]
    shown = ", ".join(labels)
    if all(not isinstance(r, Unknown) and _truth(r) for r in results):
        why = "the command line selects it" if given else "the option's default selects it"
        return dataclasses.replace(finding, message=f"{finding.message} ({shown}: {why})")
    decided_off = any(not isinstance(r, Unknown) and not _truth(r) for r in results)
    if given and not decided_off:  # the user set the option and the scan cannot tell its effect
        return dataclasses.replace(finding, message=f"{finding.message} ({shown} set on the command line)")
    return dataclasses.replace(
        finding,
        severity="warning",
        message=f"{finding.message} (option-conditional: this path runs only for some values of {shown})",
    )
