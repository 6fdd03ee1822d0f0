"""``ascend-doctor patch-status``: what ``import ascend_tools.patch`` patches here, and with which tier."""

from typing import Any, Dict

import click

from .common import emit, handle_errors, output_options

SCHEMA = "ascend-doctor/patch-status/1"


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def build_report(st: Dict[str, Any]) -> Any:
    """The ``patch-status`` report; ``report.data`` is ``ascend_tools.patch.status()`` itself."""
    from ..report import Report, Table

    attn = st.get("attention", {})
    fams = st.get("families", [])
    report = Report(
        schema=SCHEMA,
        title="ascend-doctor patch-status",
        summary=[
            ("transformers", st.get("transformers") or "not installed"),
            (
                "families patched",
                sum(1 for f in fams if f["rms_norm"] or f["rope"] or f["attention_default"]),
            ),
            (
                f"{st.get('attn_name')} registered",
                f"attention {_yes(attn.get('attention_interface'))}, mask {_yes(attn.get('mask_interface'))}",
            ),
            ("default attention", _yes(attn.get("default"))),
            ("models patched by apply()", len(st.get("models", []))),
        ],
        data=st,
    )
    sec = report.section(
        "Families",
        [
            "Module-level patches in each family's modeling module "
            "(rms_norm: the RMSNorm class forward; rope: apply_rotary_pos_emb; "
            "attention: models built without an attn_implementation use ascend_fused)."
        ],
    )
    rows = [
        [
            f["family"],
            ", ".join(f["norm_classes"]),
            f["eps_attr"],
            f["casting"] + (f" +{f['offset']:g}" if f["offset"] else ""),
            _yes(f["rms_norm"]),
            _yes(f["rope"]),
            _yes(f.get("swiglu", False)),
            _yes(f.get("linear_cross_entropy", False)),
            _yes(f["attention_default"]),
            f["error"] or ("" if f["loaded"] else "module not loaded"),
        ]
        for f in fams
    ]
    sec.tables.append(
        Table(
            title="",
            columns=[
                "family",
                "norm class",
                "eps attr",
                "casting",
                "rms_norm",
                "rope",
                "swiglu",
                "linear CE",
                "attention",
                "note",
            ],
            rows=rows,
        )
    )
    sec = report.section(
        "Tiers",
        [
            "The tier each op runs on this device (ops/registry.py: a non-reference "
            "tier is self-checked against the reference on first use)."
        ],
    )
    sec.tables.append(
        Table(
            title="",
            columns=["op", "device", "tier", "verdict", "candidates", "forced"],
            rows=[
                [
                    t["op"],
                    t.get("device", ""),
                    t.get("tier") or "-",
                    t.get("verdict", ""),
                    ", ".join(t.get("candidates", [])),
                    t.get("forced") or "",
                ]
                for t in st.get("tiers", [])
            ],
        )
    )
    if st.get("models"):
        sec = report.section("Models patched by apply()")
        sec.tables.append(
            Table(
                title="",
                columns=["model", "families", "norm instances", "attn_implementation"],
                rows=[
                    [m["model"], ", ".join(m["families"]), m["norm_instances"], m["attn_implementation"]]
                    for m in st["models"]
                ],
            )
        )
    errors = {k: v for k, v in st.get("errors", {}).items() if k.startswith("op:")}
    if errors:
        sec = report.section("Ops left unpatched")
        sec.tables.append(
            Table(title="", columns=["op", "why"], rows=[[k[3:], v] for k, v in errors.items()])
        )
    return report


@click.command("patch-status")
@output_options
@handle_errors
def patch_status_cmd(fmt: str, output: Any) -> None:
    """What `import ascend_tools.patch` patches in this environment (families, attention registration,
    default attention, models patched by apply()) and the tier each op runs with."""
    from .. import patch

    emit(build_report(patch.status()), fmt, output)
