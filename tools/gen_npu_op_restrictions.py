"""Generate ``ascend_tools/opcheck/data/npu_op_restrictions.json``: per-op dtype and argument limits.

Input: torch_npu's support pages of the native PyTorch APIs for torch 2.13 (``native_api_2.13/*.md``,
Ascend/pytorch ``docs/zh/api/native_api/pytorch_2-13-0/``). Each API has a section with a link to its
PyTorch page (``**原生文档**：[torch.topk](...)``, the API's name), a support table per product and free
prose under ``**限制与说明**`` ("limits and notes"). Two kinds of sentence are read from that prose:

* dtype limits, ``` `ARG`仅支持fp16，fp32 ``` ("ARG supports only fp16, fp32"): the dtypes the NPU kernel
  takes for tensor argument ARG. Kept only when every listed word is a dtype.
* argument limits: ``不支持`NAME=VALUE``` ("NAME=VALUE is not supported") and ``仅支持返回`NAME`为true``
  ("only NAME true is returned", Tensor.topk's wording of the same limit).

Sentences that name only Ascend 950DT are skipped (the tool targets Atlas A2/A3 training products).
API names map to aten ops by their last component (``torch.topk``, ``Tensor.topk`` -> ``aten::topk``;
``torch.linalg.X`` -> ``linalg_X``; ``torch.special.X`` -> ``special_X``; ``torch.fft.X`` -> ``fft_X``),
only in the namespaces whose functions are aten ops (``OP_NAMESPACES``: not a class's method such as
``torch.nn.ParameterDict.copy``), kept when the installed torch has that aten op; an op's tensor argument is located by position among
the schema's tensor arguments (the trace records the dtypes of tensor inputs in order). Two pages on the
same op (``torch.histc`` and ``Tensor.histc``) merge: the union of their dtype lists, every argument limit.

Usage: ``python tools/gen_npu_op_restrictions.py [--docs DIR] [--out F] [--check]``
"""

import argparse
import glob
import hashlib
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "..", "shared", "data", "torch_npu", "native_api_2.13")
OUT = os.path.join(ROOT, "ascend_tools", "opcheck", "data", "npu_op_restrictions.json")
SOURCE = "Ascend/pytorch docs/zh/api/native_api/pytorch_2-13-0/ (torch_npu native API support, torch 2.13)"

DTYPE_WORDS = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "fp32": "float32",
    "fp64": "float64",
    "uint8": "uint8",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "bool": "bool",
    "complex32": "complex32",
    "complex64": "complex64",
    "complex128": "complex128",
}
NAMESPACE_PREFIX = {"torch.linalg": "linalg_", "torch.special": "special_", "torch.fft": "fft_"}
#: namespaces whose functions are aten ops of the same name; a method of another class
#: (``torch.nn.ParameterDict.copy``, ``torch.distributed.GradBucket.index``, ``torch.nn.Module.to``) is not
#: the aten op its last component spells, and its limits would land on the wrong op
OP_NAMESPACES = {"torch", "Tensor", "torch.Tensor", "torch.nn.functional", "torch.nn.init", *NAMESPACE_PREFIX}
_DOC_LINK = re.compile(r"\*\*原生文档\*\*：\[([\w.]+)\]")
_LIMITS = re.compile(r"\*\*限制与说明\*\*：(.*?)(?=</div>|\Z)", re.S)
_DTYPE_LIMIT = re.compile(r"`(\w+)`仅支持([\w，,、 ]+)")
_ARG_FORBIDDEN = re.compile(r"不支持`(\w+)\s*=\s*(\w+)`")
_ARG_ONLY_TRUE = re.compile(r"仅支持返回`(\w+)`为(true|True)")


def _sections(text: str) -> List[Tuple[str, str]]:
    """(API name, limits prose) per section; a section starts at its ``原生文档`` link."""
    links = list(_DOC_LINK.finditer(text))
    out = []
    for i, m in enumerate(links):
        body = text[m.end() : links[i + 1].start() if i + 1 < len(links) else len(text)]
        limits = _LIMITS.search(body)
        if limits:
            out.append((m.group(1), limits.group(1)))
    return out


def aten_name(api: str) -> Optional[str]:
    """The aten op an API name stands for, if the installed torch has one."""
    import torch

    prefix, _, name = api.rpartition(".")
    if prefix not in OP_NAMESPACES:
        return None
    name = NAMESPACE_PREFIX.get(prefix, "") + name
    return name if hasattr(torch.ops.aten, name) else None


def _tensor_args(op: str) -> List[str]:
    import torch

    packet = getattr(torch.ops.aten, op)
    names: List[str] = []
    for overload in packet.overloads():
        for a in getattr(packet, overload)._schema.arguments:
            if (
                a.type.kind() in ("TensorType", "OptionalType")
                and "Tensor" in str(a.type)
                and not a.kwarg_only
            ) and a.name not in names:
                names.append(a.name)
        if names:
            break
    return names


def _sentences(prose: str) -> List[str]:
    """The prose's sentences (list items and 。-separated), without those that only concern Ascend 950DT."""
    parts = [s.strip(" -") for line in prose.splitlines() for s in line.split("。")]
    return [s for s in parts if s and not ("950DT" in s and "A2" not in s and "A3" not in s)]


def parse(api: str, prose: str) -> Dict[str, Any]:
    """``{"dtypes": {arg: [dtype, ...]}, "args": {name: forbidden value}}`` stated by one section."""
    dtypes: Dict[str, List[str]] = {}
    args: Dict[str, Any] = {}
    for s in _sentences(prose):
        for m in _DTYPE_LIMIT.finditer(s):
            words = [w.strip() for w in re.split(r"[，,、]", m.group(2)) if w.strip()]
            if words and all(w in DTYPE_WORDS for w in words):
                dtypes.setdefault(m.group(1), []).extend(DTYPE_WORDS[w] for w in words)
        for m in _ARG_FORBIDDEN.finditer(s):
            value = {"False": False, "True": True}.get(m.group(2), m.group(2))
            args[m.group(1)] = value
        for m in _ARG_ONLY_TRUE.finditer(s):
            args[m.group(1)] = False
    return {"dtypes": dtypes, "args": args}


def build(docs: str) -> Dict[str, Any]:
    files = sorted(glob.glob(os.path.join(docs, "*.md")))
    if not files:
        raise SystemExit(f"{docs}: no *.md files")
    ops: Dict[str, Dict[str, Any]] = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for api, prose in _sections(text):
            op = aten_name(api)
            if op is None:
                continue
            found = parse(api, prose)
            tensor_args = _tensor_args(op)
            # the docs say `input` where the aten schema says `self`
            named = {
                ("self" if a == "input" and a not in tensor_args else a): d
                for a, d in found["dtypes"].items()
            }
            limits = {a: d for a, d in named.items() if a in tensor_args}
            if not limits and not found["args"]:
                continue
            entry = ops.setdefault(op, {"apis": [], "dtypes": {}, "args": {}})
            entry["apis"].append(api)
            for arg, dts in limits.items():
                index = str(tensor_args.index(arg))
                entry["dtypes"][index] = sorted(set(entry["dtypes"].get(index, [])) | set(dts))
                entry.setdefault("arg_names", {})[index] = arg
            entry["args"].update(found["args"])
    for entry in ops.values():
        entry["apis"] = sorted(set(entry["apis"]))
    digests = {}
    for path in files:
        with open(path, "rb") as f:
            digests[os.path.basename(path)] = hashlib.sha256(f.read()).hexdigest()
    return {
        "source": SOURCE,
        "generator": "tools/gen_npu_op_restrictions.py",
        "files_sha256": digests,
        "ops": ops,
    }


def render(table: Dict[str, Any]) -> str:
    return json.dumps(table, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--docs", default=DOCS, help="folder of native_api_2.13/*.md")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if --out differs from what would be written")
    a = ap.parse_args(argv)
    text = render(build(a.docs))
    if a.check:
        with open(a.out, encoding="utf-8") as f:
            same = f.read() == text
        print(f"{a.out}: {'up to date' if same else 'STALE'}")
        return 0 if same else 1
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {a.out}: {len(json.loads(text)['ops'])} ops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
