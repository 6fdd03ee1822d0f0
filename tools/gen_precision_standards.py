"""Generate ascend_tools/precision/data/precision_standards.json from msprobe's API precision standards.

Reads Huawei's ``api_precision_standard.yaml`` (../shared/data/msprobe/api_precision_standard.yaml,
from mstt ``msprobe/pytorch/api_accuracy_checker/compare/``), which lists the torch APIs that its API
checker judges by each standard, and writes one sorted ``{api name: standard}`` table. Standards:
``AbsoluteThreshStandard`` -> "absolute", ``ULPStandard`` -> "ulp", ``ThousandthStandard`` ->
"thousandth", ``BinaryCompareStandard`` -> "binary"; every API absent from the table is
"benchmark" (msprobe's default). ``AccumulativeErrorStandard`` holds only msprobe's placeholder
``test_api`` and is left out. The package reads only the JSON, never ../shared.

    python tools/gen_precision_standards.py [--standards YAML] [--out JSON] [--check]
"""

import argparse
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STANDARDS = os.path.join(ROOT, "..", "shared", "data", "msprobe", "api_precision_standard.yaml")
DEFAULT_OUT = os.path.join(ROOT, "ascend_tools", "precision", "data", "precision_standards.json")
CATEGORIES = {
    "AbsoluteThreshStandard": "absolute",
    "BinaryCompareStandard": "binary",
    "ThousandthStandard": "thousandth",
    "ULPStandard": "ulp",
}
LEFT_OUT = ("AccumulativeErrorStandard",)


def generate(standards_path: str) -> dict:
    with open(standards_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    unknown = sorted(set(raw) - set(CATEGORIES) - set(LEFT_OUT))
    if unknown:
        raise SystemExit(
            f"{standards_path}: unknown standard(s) {', '.join(unknown)}: map them in CATEGORIES"
        )
    ops = {}
    for section, standard in CATEGORIES.items():
        for api in raw.get(section) or []:
            api = str(api)
            if ops.get(api, standard) != standard:
                raise SystemExit(f"{standards_path}: {api} is listed under both {ops[api]} and {standard}")
            ops[api] = standard
    return {
        "source": "msprobe api_precision_standard.yaml (Ascend mstt, "
        "debug/accuracy_tools/msprobe/pytorch/api_accuracy_checker/compare/)",
        "default": "benchmark",
        "ops": dict(sorted(ops.items())),
    }


def render(standards_path: str) -> str:
    return json.dumps(generate(standards_path), indent=1, sort_keys=True) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standards", default=DEFAULT_STANDARDS)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be generated"
    )
    args = parser.parse_args(argv)
    text = render(args.standards)
    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                stale = f.read() != text
        except FileNotFoundError:
            stale = True
        print(f"{args.out}: {'stale' if stale else 'up to date'}")
        return int(stale)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
