"""Writes the hostile-input corpus (issue 11) into a directory at test time; no binary is checked in.

``make_corpus(root)`` returns ``{case name: (verb, [args])}``: each case is one CLI verb that reads files,
run on a crafted input (deep JSON, a mistyped record, a bad UTF-8 byte, a corrupt .npy, a pathological
loss log, stray rank directories). ``python make_corpus.py DIR`` writes it for a look by hand.
"""

import json
import os
import sys
from typing import Dict, List, Tuple

import numpy as np

DEEP = "[" * 100_000 + "]" * 100_000
RECORD = {
    "id": 0,
    "name": "aten::add.Tensor",
    "kind": "op",
    "phase": "forward",
    "call": 0,
    "module": "",
    "step": 0,
    "rank": 0,
    "inputs": [],
    "outputs": [
        {"dtype": "float32", "shape": [2], "stats": {"max": 1.0, "min": 0.0, "mean": 0.5, "norm": 1.0}}
    ],
}


def _write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _dump(root: str, lines: List[bytes], npy: bytes = b"") -> str:
    _write(
        os.path.join(root, "rank0", "meta.json"),
        json.dumps({"schema": "ascend-doctor/dump/1", "rank": 0}).encode(),
    )
    _write(os.path.join(root, "rank0", "step0", "records.jsonl"), b"".join(line + b"\n" for line in lines))
    if npy:
        _write(os.path.join(root, "rank0", "step0", "tensors", "t.npy"), npy)
    return root


def _profile(root: str, extra_rank: int = -1, events: bytes = b"", world: int = 2) -> str:
    for r in range(2):
        meta = {"schema": "ascend-doctor/profile/1", "rank": r, "world_size": world, "closed_at": 1.0}
        _write(os.path.join(root, f"rank{r}", "meta.json"), json.dumps(meta).encode())
        coll = {"k": "coll", "gid": "0", "seq": 0, "op": "all_reduce", "t0": 1.0, "t1": 1.1}
        body = json.dumps({"k": "group", "gid": "0", "ranks": [0, 1]}) + "\n" + json.dumps(coll) + "\n"
        _write(os.path.join(root, f"rank{r}", "events.jsonl"), body.encode() + events)
    if extra_rank >= 0:
        os.makedirs(os.path.join(root, f"rank{extra_rank}"))
    return root


def make_corpus(root: str) -> Dict[str, Tuple[str, List[str]]]:
    good = json.dumps(RECORD).encode()
    ok = _dump(os.path.join(root, "ok_dump"), [good])
    j = os.path.join
    cases: Dict[str, Tuple[str, List[str]]] = {}
    for name, lines in {
        "deep_record": [good, DEEP.encode()],
        "stats_as_list": [
            good,
            json.dumps(dict(RECORD, id=1, outputs=[dict(RECORD["outputs"][0], stats=[1, 2])])).encode(),
        ],
        "bad_utf8": [good, b'{"id": 1, "name": "\xff"}'],
        "record_is_list": [good, b"[1, 2]"],
        # mistyped fields that used to stop compare deep inside (exit 3)
        "id_str": [good, json.dumps(dict(RECORD, id="x")).encode()],
        "phase_list": [good, json.dumps(dict(RECORD, id=1, phase=[])).encode()],
        "stats_str": [
            good,
            json.dumps(dict(RECORD, id=1, outputs=[dict(RECORD["outputs"][0], stats={"max": "a"})])).encode(),
        ],
        "file_int": [
            good,
            json.dumps(dict(RECORD, id=1, outputs=[dict(RECORD["outputs"][0], file=7)])).encode(),
        ],
    }.items():
        cases[name] = ("compare", [_dump(j(root, name), lines), ok])
    npy_rec = dict(RECORD, outputs=[dict(RECORD["outputs"][0], file="tensors/t.npy")])
    cases["corrupt_npy"] = (
        "compare",
        [_dump(j(root, "corrupt_npy"), [json.dumps(npy_rec).encode()], npy=b"\x93NUMPY\x01\x00garbage"), ok],
    )
    cases["absent_rank"] = ("compare", [ok, ok, "--rank", "7"])
    _write(j(root, "deep_meta", "rank0", "meta.json"), DEEP.encode())
    cases["deep_meta"] = ("compare", [j(root, "deep_meta"), ok])
    _write(j(root, "msprobe_deep", "dump.json"), DEEP.encode())
    cases["msprobe_deep"] = ("compare", [j(root, "msprobe_deep"), ok])
    loss_ok = _write(
        j(root, "loss_ok.log"), b"".join(b"step %d loss=%f\n" % (i, 1.0 / (i + 1)) for i in range(5))
    )
    for name, data in {
        "loss_blanks_after_key": b"loss" + b" " * 20_000 + b"x\n",
        "loss_blanks_after_step": b"loss=1.0 step" + b" " * 3_000 + b"x\n",
        "loss_deep_json": DEEP.encode(),
        "loss_deep_jsonl": b'{"step": 1, "loss": 1.0}\n' + DEEP.encode() + b"\n",
        "loss_bad_utf8": b"step 1 loss=\xff1.0\nstep 2 loss=0.5\n",
    }.items():
        cases[name] = ("loss-compare", [_write(j(root, name + ".log"), data), loss_ok])
    cases["profile_huge_rank"] = (
        "analyze",
        [_profile(j(root, "profile_huge_rank"), extra_rank=999_999_999_999)],
    )
    cases["profile_rank_50M"] = ("analyze", [_profile(j(root, "profile_rank_50M"), extra_rank=50_000_000)])
    cases["profile_rank_past_world"] = (
        "analyze",
        [_profile(j(root, "profile_rank_past_world"), extra_rank=5)],
    )
    cases["profile_deep_line"] = (
        "analyze",
        [_profile(j(root, "profile_deep_line"), events=DEEP.encode() + b"\n")],
    )
    cases["profile_bad_utf8"] = (
        "analyze",
        [_profile(j(root, "profile_bad_utf8"), events=b'{"k": "\xff"}\n')],
    )
    group = b'{"k": "group", "gid": "1", "ranks": [0, 131071]}\n'
    coll = b'{"k": "coll", "gid": "1", "seq": 0, "op": "all_reduce", "t0": 1.0, "t1": 1.1}\n'
    cases["profile_group_past_world"] = (
        "analyze",
        [_profile(j(root, "profile_group_past_world"), events=group + coll)],
    )
    entry = {"input_args": [{"type": "torch.Tensor", "dtype": "torch.float32", "shape": "big"}], "output": []}
    doc = {"task": "statistics", "data": {"Functional.add.0.forward": entry}}
    _write(j(root, "msprobe_bad_entry", "dump.json"), json.dumps(doc).encode())
    cases["msprobe_bad_entry"] = ("compare", [j(root, "msprobe_bad_entry"), ok])
    return cases


if __name__ == "__main__":
    for case, (verb, args) in make_corpus(sys.argv[1]).items():
        print(case, verb, *args)
