"""Generate ascend_tools/opcheck/data/fusion_patterns.json from msprof-analyze's fusion rules.

Reads Huawei's ``timeline_fusion_ops.yaml`` (../shared/data/msprobe/msprof_analyze_timeline_fusion_ops.yaml),
resolves its ``inherit_unique_id`` chain to the newest rule set, and keeps the rules whose fused op
replaces a chain of compute ops in a model's forward (attention, RoPE, RMSNorm, SwiGLU, ...).
Rules made only of layout ops (npu_confusion_transpose), optimizer rules and MindSpeed-only ops are
left out: they would flag every model, or they need a library we do not ship.

    python tools/gen_fusion_patterns.py [--rules YAML] [--out JSON] [--check]
"""

import argparse
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RULES = os.path.join(
    ROOT, "..", "shared", "data", "msprobe", "msprof_analyze_timeline_fusion_ops.yaml"
)
DEFAULT_OUT = os.path.join(ROOT, "ascend_tools", "opcheck", "data", "fusion_patterns.json")
KEEP = (
    "torch_npu.npu_fusion_attention",
    "torch_npu.npu_rotary_mul",
    "torch_npu.npu_rms_norm",
    "torch_npu.npu_swiglu",
    "torch_npu.npu_geglu",
    "torch_npu.npu_scaled_masked_softmax",
    "torch_npu.npu_add_layer_norm",
    "torch_npu.npu_group_norm_silu",
)


def newest_rules(entries: list) -> dict:
    """The aten rule set of the last entry, with every inherited entry's ``add`` applied first."""
    by_id = {}
    for entry in entries:
        by_id[entry["unique_id"]] = entry  # a repeated id: the later entry wins, as in the file's order

    def resolve(entry: dict) -> dict:
        parent = entry.get("inherit_unique_id")
        rules = dict(resolve(by_id[parent])) if parent is not None else {}
        aten = entry.get("operator_rules", {}).get("aten", {})
        rules.update(aten.get("add", {}) or {})
        for name in aten.get("delete", {}) or {}:
            rules.pop(name, None)
        return rules

    return resolve(entries[-1])


def generate(rules_path: str) -> dict:
    with open(rules_path, encoding="utf-8") as f:
        entries = yaml.safe_load(f)
    rules = newest_rules(entries)
    return {
        "source": "msprof-analyze advisor/rules/timeline_fusion_ops.yaml (Ascend mstt), newest rule set: CANN "
        + str(entries[-1]["cann_version"]),
        "patterns": {op: list(rules[op]) for op in KEEP if op in rules},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default=DEFAULT_RULES)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be generated"
    )
    args = parser.parse_args(argv)
    text = json.dumps(generate(args.rules), indent=1, sort_keys=True) + "\n"
    if args.check:
        with open(args.out, encoding="utf-8") as f:
            stale = f.read() != text
        print("{}: {}".format(args.out, "stale" if stale else "up to date"))
        return int(stale)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
