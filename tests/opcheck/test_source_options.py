"""CUDA-only paths that a command-line or config option selects (option_conditions): a warning naming the
option, unless the launch command or the option's default selects the path. The shapes are those of
THUDM/ChatGLM-6B's ptuning trainer (``elif args.optim == OptimizerNames.ADAMW_BNB: from bitsandbytes.optim
import Adam8bit``, ``if optimizer_cls.__name__ == "Adam8bit": import bitsandbytes``), written here to their
known answers, not copied."""

import ast
import textwrap

import pytest

from ascend_tools.opcheck.option_conditions import UNKNOWN, argparse_default, evaluate
from ascend_tools.opcheck.source_scan import scan_command, scan_file

TRAINER = """
from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class ModelArguments:
    quantization_bit: Optional[int] = field(default=None)
    use_fused_adam: bool = field(default=True)


def create_optimizer(self, params):
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args)
    optimizer = optimizer_cls(params, **optimizer_kwargs)
    if optimizer_cls.__name__ == "Adam8bit":
        import bitsandbytes
    return optimizer


def get_optimizer_cls_and_kwargs(args):
    if args.optim == OptimizerNames.ADAMW_TORCH:
        return torch.optim.AdamW, {}
    elif args.optim == OptimizerNames.ADAMW_BNB:
        from bitsandbytes.optim import Adam8bit
        return Adam8bit, {}
    elif not args.optim:
        from apex.optimizers import FusedAdam
    return None, {}


def load(model_args):
    model = AutoModel.from_pretrained("m", load_in_8bit=model_args.quantization_bit == 8)
    if model_args.use_fused_adam:
        import bitsandbytes as bnb
    return model
"""
IMPORT_8BIT, OPTIM_BNB, LOAD_8BIT, DEFAULT_ON = 18, 26, 34, 36  # the lines of the four option-selected uses


def by_line(findings, file="train.py"):
    out = {}
    for f in findings:
        if f.file.endswith(file) and f.rule == "lib-bitsandbytes":
            out.setdefault(f.line, []).append(f)
    return out


def severity(findings, line):
    return {f.severity for f in findings[line]}


@pytest.fixture
def script(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAINER))
    return tmp_path


def test_paths_selected_by_an_option_are_warnings_naming_it(script):
    found = by_line(scan_file(script / "train.py"))
    assert severity(found, OPTIM_BNB) == {"warning"}
    assert all("--optim" in f.message for f in found[OPTIM_BNB])
    assert severity(found, IMPORT_8BIT) == {
        "warning"
    }  # optimizer_cls comes from get_optimizer_cls_and_kwargs(args)
    assert "get_optimizer_cls_and_kwargs()" in found[IMPORT_8BIT][0].message
    assert severity(found, LOAD_8BIT) == {"warning"}  # the default quantization_bit (None) is not 8
    assert "--quantization_bit" in found[LOAD_8BIT][0].message
    assert severity(found, DEFAULT_ON) == {"error"}  # use_fused_adam defaults to True: the path runs
    assert "default selects it" in found[DEFAULT_ON][0].message


@pytest.mark.parametrize(
    "args, line, expected",
    [
        (["--optim", "adamw_bnb_8bit"], OPTIM_BNB, "error"),  # set, and the enum test is not evaluable
        (["--quantization_bit", "8"], LOAD_8BIT, "error"),
        (["--quantization_bit=4"], LOAD_8BIT, "warning"),  # evaluated: 4 == 8 is false
        (["--use_fused_adam", "False"], DEFAULT_ON, "warning"),
        (["--use-fused-adam", "True"], DEFAULT_ON, "error"),
    ],
)
def test_the_launch_command_decides(script, args, line, expected):
    found = by_line(scan_command("train.py", args, str(script)))
    assert severity(found, line) == {expected}


def test_an_hf_option_file_sets_the_options_too(script):
    (script / "sft.json").write_text('{"quantization_bit": 8}')
    found = by_line(scan_command("train.py", ["sft.json"], str(script)))
    assert severity(found, LOAD_8BIT) == {"error"}


@pytest.mark.parametrize(
    "expr",
    [
        "args.bits == 4",
        "args.bits != 4 and cfg.get('compile', False)",
        "not args.flag or args.bits in (4, 8)",
        "args.name.lower() == 'adam8bit'",
        "args.bits > 2 > 1",
        "args.missing is None",
        "cfg.get('compile', True)",
    ],
)
def test_evaluate_agrees_with_python(expr):
    class Args:
        bits, flag, name, missing = 8, True, "Adam8bit", None

    class Cfg(dict):
        pass

    values = {"bits": 8, "flag": True, "name": "Adam8bit", "missing": None}
    assert evaluate(ast.parse(expr, mode="eval").body, values) == eval(expr, {"args": Args, "cfg": Cfg()})


def test_evaluate_leaves_what_it_cannot_know():
    assert (
        evaluate(ast.parse("args.optim == OptimizerNames.ADAMW_BNB", mode="eval").body, {"optim": "x"})
        is UNKNOWN
    )
    assert evaluate(ast.parse("args.bits == 4", mode="eval").body, {}) is UNKNOWN
    # `and` with one side known false is false whatever the other side is
    assert evaluate(ast.parse("args.bits == 4 and f()", mode="eval").body, {"bits": 8}) is False


@pytest.mark.parametrize(
    "call, expected",
    [
        ("p.add_argument('--quantization-bit', type=int, default=8)", ("quantization_bit", 8)),
        ("p.add_argument('-f', '--use_flash', action='store_true')", ("use_flash", False)),
        ("p.add_argument('--no-bnb', dest='bnb', action='store_false')", ("bnb", True)),
        ("p.add_argument('--lr', default=get_lr())", None),
    ],
)
def test_argparse_defaults(call, expected):
    assert argparse_default(ast.parse(call, mode="eval").body) == expected
