"""The capture's line encoder writes what json.dumps writes for the same record."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ascend_tools.precision import store
from ascend_tools.precision.lines import LineEncoder, number, stats_json
from ascend_tools.precision.records import TensorStats

floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64))
names = st.text(min_size=0, max_size=12)


def _same(a, b):
    """Equal, with NaN equal to NaN (json.loads reads NaN back)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


@settings(deadline=None)
@given(floats)
def test_number_is_what_json_writes(v):
    assert number(v) == json.dumps(v)


@settings(max_examples=200, deadline=None)
@given(floats, floats, floats, floats, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
def test_stats_json_matches_json_dumps(mx, mn, mean, norm, nan, inf, sat):
    s = TensorStats(max=mx, min=mn, mean=mean, norm=norm, nan=nan, inf=inf, sat=sat)
    want = {"max": mx, "min": mn, "mean": mean, "norm": norm, "nan": nan, "inf": inf, "sat": sat}
    assert _same(json.loads(stats_json(s)), want)


args_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.just(store.TENSOR_SLOT),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner)),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    names,
    st.sampled_from(["op", "module"]),
    st.sampled_from(["forward", "backward", "optimizer"]),
    names,
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.one_of(st.none(), st.integers(0, 10**4)),
    st.lists(st.integers(0, 9), max_size=4),
    st.one_of(st.none(), st.lists(args_values, max_size=3)),
)
def test_line_matches_json_dumps_of_the_record(name, kind, phase, module, rid, call, stack, shape, args):
    enc = LineEncoder(rank=3)
    tensor = enc.tensor_head("float32", shape) + "}"
    call_args = None if args is None else (args, {"k": 1})
    line = enc.line(
        rid,
        name,
        kind,
        phase,
        call,
        module,
        tensor,
        "",
        enc.args(call_args) if call_args else "",
        stack,
        step=7,
    )
    assert line.endswith("\n") and "\n" not in line[:-1]
    want = {
        "name": name,
        "kind": kind,
        "phase": phase,
        "module": module,
        "id": rid,
        "call": call,
        "inputs": [{"dtype": "float32", "shape": shape}],
        "outputs": [],
        "step": 7,
        "rank": 3,
    }
    if call_args is not None:
        want["args"] = json.loads(store._dumps(store.encode_call(args, {"k": 1}, [])))
    if stack is not None:
        want["stack"] = stack
    assert _same(json.loads(line), want)


def test_args_cache_tells_int_from_float_and_bool():
    enc = LineEncoder(rank=0)
    texts = [enc.args(([v], {})) for v in (1, 1.0, True)]
    assert [json.loads(t[len(',"args":') :])["args"][0] for t in texts] == [1, 1.0, True]
    assert [type(json.loads(t[len(',"args":') :])["args"][0]) for t in texts] == [int, float, bool]
