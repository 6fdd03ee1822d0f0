"""Functional collectives (``torch.ops._c10d_functional``): what DTensor, tensor parallel and FSDP2's
``clip_grad_norm_`` issue, recorded like the ``torch.distributed`` calls ``comm.py`` wraps.

A functional collective returns its output at once, before the communication has run; the caller waits
for it with ``_c10d_functional::wait_tensor`` (DTensor's ``AsyncCollectiveTensor`` waits at its first use).
So a call is entered (``t0``, its group's next seq, in flight for the hang watchdog) when the op is issued
and completed when its output is first waited for: ``t1`` is then an upper bound of when the communication
ended (the caller may wait long after). Until its wait begins it is in flight with ``waited_at: null``: listed in a
hang's dump (the rank entered it), but no hang of its own (the rank is not blocked on it; an output never waited
for, which torch warns of at exit, would otherwise read as a hang); from then on the watchdog times it from
``waited_at``.

The ops are wrapped where every eager caller finds them, on the ``torch.ops._c10d_functional`` namespace
(``torch.distributed._functional_collectives`` looks them up there at each call, in every torch since 2.3).
Inside ``torch.compile`` the wrapper calls the op straight away: compiled graphs call the op overloads
themselves, which stay unseen (docs/profiling.md).
"""

import functools
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import torch

from ..dispatch import PLAIN_TENSORS as _PLAIN
from .comm import VIA_PATHS, Getter, _many, _one, _times_n

if TYPE_CHECKING:
    from .comm import CommInterceptor

Rule = Callable[[Getter, int], Tuple[int, Optional[str]]]

#: op -> (op family, S and dtype from its arguments by schema name and the group size), S as in ``comm.SPECS``
SPECS: Dict[str, Tuple[str, Rule]] = {
    "all_reduce": ("all_reduce", lambda a, n: _one(a("input"))),
    "all_reduce_": ("all_reduce", lambda a, n: _one(a("input"))),
    "all_reduce_coalesced": ("all_reduce", lambda a, n: _many(a("inputs"))),
    "all_reduce_coalesced_": ("all_reduce", lambda a, n: _many(a("inputs"))),
    "all_gather_into_tensor": ("all_gather", lambda a, n: _times_n(a("input"), n)),
    "all_gather_into_tensor_out": ("all_gather", lambda a, n: _times_n(a("input"), n)),
    "all_gather_into_tensor_coalesced": ("all_gather", lambda a, n: _n_times_many(a("inputs"), n)),
    "reduce_scatter_tensor": ("reduce_scatter", lambda a, n: _one(a("input"))),
    "reduce_scatter_tensor_out": ("reduce_scatter", lambda a, n: _one(a("input"))),
    "reduce_scatter_tensor_coalesced": ("reduce_scatter", lambda a, n: _many(a("inputs"))),
    "all_to_all_single": ("all_to_all", lambda a, n: _one(a("input"))),
    "broadcast": ("broadcast", lambda a, n: _one(a("input"))),
    "broadcast_": ("broadcast", lambda a, n: _one(a("input"))),
}
NAMESPACE = "_c10d_functional"


def _n_times_many(ts: Any, n: int) -> Tuple[int, Optional[str]]:
    size, dtype = _many(ts)
    return size * n, dtype


def _storage_key(t: Any) -> Optional[int]:
    """The address of ``t``'s storage; None for anything but a plain tensor: DTensor's ``AsyncCollectiveTensor``
    (whose wait waits on the plain tensor it wraps, through this wrapper again), a fake tensor."""
    if type(t) not in _PLAIN:
        return None
    try:
        return int(t.untyped_storage().data_ptr())
    except Exception:
        return None


def _traced(args: tuple) -> bool:
    """Whether this call is being traced rather than run: ``torch.compile`` (dynamo, then AOT's fake tensors)
    records no collective that will not run."""
    first = args[0] if args else None
    if isinstance(first, (list, tuple)):
        first = first[0] if first else None
    if first is None or type(first).__name__ in _TRACING_TYPES or getattr(first, "is_meta", False):
        return True
    return bool(_is_compiling())


_is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", None) or (lambda: False)
_TRACING_TYPES = ("FakeTensor", "FunctionalTensor")
_ISSUERS: Dict[Any, str] = {}  # code object -> via


def _issuer(frame: Any) -> str:
    """``via`` of a functional collective: what called ``torch.distributed._functional_collectives`` (DTensor:
    ``dtensor``; FSDP: ``fsdp``), else ``funcol`` (the script itself, or another library)."""
    while frame is not None and frame.f_code.co_filename.replace("\\", "/").endswith(_FUNCOL_FILE):
        frame = frame.f_back
    if frame is None:
        return "funcol"
    code = frame.f_code
    via = _ISSUERS.get(code)
    if via is None:
        name = code.co_filename.replace("\\", "/")
        via = _ISSUERS[code] = next((v for path, v in VIA_PATHS if path in name), "funcol")
    return via


_FUNCOL_FILE = "/distributed/_functional_collectives.py"


class FunctionalCollectives:
    """Wraps the ops of :data:`SPECS` and ``wait_tensor`` on the namespace for ``comm``, the interceptor whose
    groups, seq counters, in-flight list and records they share."""

    def __init__(self, comm: "CommInterceptor") -> None:
        self.comm = comm
        # storage address of an output -> the calls waiting for it (an in-place op may be issued twice on one
        # tensor before a wait; one wait completes both: they ran in order on the group)
        self._waiting: Dict[int, List[Dict[str, Any]]] = {}
        self._by_name: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def install(self) -> None:
        try:
            namespace = getattr(torch.ops, NAMESPACE)
        except (AttributeError, RuntimeError):  # torch < 2.3: its functional collectives stay unseen
            return
        for name, (family, rule) in SPECS.items():
            packet = getattr(namespace, name, None)
            if packet is not None:
                self.comm._replace(namespace, name, packet, self._wrap(name, family, rule, packet))
        wait = getattr(namespace, "wait_tensor", None)
        if wait is not None:
            self.comm._replace(namespace, "wait_tensor", wait, self._wrap_wait(wait))

    def _wrap(self, name: str, family: str, rule: Rule, packet: Any) -> Any:
        comm = self.comm
        tls = comm._tls
        names = [a.name for a in packet.default._schema.arguments]
        pos = {n: i for i, n in enumerate(names)}
        api = f"{NAMESPACE}.{name}"

        def get(args: tuple, kwargs: Dict[str, Any]) -> Getter:
            def value(key: str, default: Any = None) -> Any:
                if key == "group":
                    return self._group(value("group_name"))
                if key in kwargs:
                    return kwargs[key]
                i = pos.get(key)
                return args[i] if i is not None and i < len(args) else default

            return value

        @functools.wraps(packet)
        def functional_collective(*args: Any, **kwargs: Any) -> Any:
            if not comm.active or getattr(tls, "busy", False) or _traced(args):
                return packet(*args, **kwargs)
            prev = getattr(tls, "via", None)
            try:
                tls.via = prev or _issuer(sys._getframe(2))
                call = comm._enter(api, family, rule, get(args, kwargs), issued_async=True)
            except Exception as exc:
                comm._fail(exc)
                call = None
            finally:
                tls.via = prev
            if call is None:
                return packet(*args, **kwargs)
            return comm.run(call, packet, args, kwargs, self._issued)

        return _packet(functional_collective, packet)

    def _group(self, group_name: Any) -> Any:
        """The process group a functional op names (a name, or the group itself in newer torch); held weakly, as
        ``comm`` holds groups (a destroyed group goes with the user's last reference)."""
        if not isinstance(group_name, str):
            return group_name
        group = self._by_name.get(group_name)
        if group is None:
            import torch.distributed.distributed_c10d as c10d

            # (_resolve_process_group takes a GroupName: a str in every torch but the newest)
            resolve: Any = c10d._resolve_process_group
            group = self._by_name[group_name] = resolve(group_name)
        return group

    def _issued(self, call: Dict[str, Any], out: Any) -> None:
        outputs = out if isinstance(out, (list, tuple)) else [out]
        keys = [k for k in (_storage_key(t) for t in outputs) if k is not None]
        if not keys:  # nothing to wait on that can be told apart: done as far as the host can see
            self.comm._completed(call)
            return
        call["_keys"] = keys
        call["waited_at"] = None  # in flight (entered, for a hang's dump), not yet blocking (hang.py)
        for key in keys:
            self._waiting.setdefault(key, []).append(call)

    def _unlink(self, call: Dict[str, Any]) -> None:
        for key in call.pop("_keys", ()):
            calls = self._waiting.get(key)
            if calls is not None:
                calls[:] = [c for c in calls if c is not call]
                if not calls:
                    del self._waiting[key]

    def _wrap_wait(self, packet: Any) -> Any:
        comm = self.comm

        @functools.wraps(packet)
        def wait_tensor(*args: Any, **kwargs: Any) -> Any:
            calls: List[Dict[str, Any]] = []
            if self._waiting:
                try:
                    key = _storage_key(args[0] if args else kwargs.get("tensor"))
                    calls = list(self._waiting.get(key, ())) if key is not None else []
                    now = time.time()
                    for call in calls:  # blocking from now on: the watchdog's clock starts
                        call["waited_at"] = now
                except Exception as exc:
                    comm._fail(exc)
            out = packet(*args, **kwargs)
            for call in calls:
                try:
                    self._unlink(call)
                    del call["waited_at"]
                    comm._completed(call)
                except Exception as exc:
                    comm._fail(exc)
            return out

        return _packet(wait_tensor, packet)


@functools.lru_cache(maxsize=1)
def _packet_class() -> Any:
    from torch._ops import OpOverloadPacket

    class Packet(OpOverloadPacket):
        """Stands for an ``OpOverloadPacket`` on the namespace, and is one (``torch.compile`` puts a packet in
        its graph as the op): a call goes to ``fn``; its overloads are the packet's own objects (``.default``
        is a key of DTensor's tables)."""

        def __init__(
            self, fn: Callable[..., Any], packet: Any
        ) -> None:  # (not the base's: nothing to look up)
            self.__dict__.update(packet.__dict__)
            self._fn, self._packet = fn, packet

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self._fn(*args, **kwargs)

        def __getattr__(self, key: str) -> Any:
            return getattr(self._packet, key)

    return Packet


def _packet(fn: Callable[..., Any], packet: Any) -> Any:
    """``fn`` in the place of ``packet`` (see :func:`_packet_class`)."""
    return _packet_class()(fn, packet)
