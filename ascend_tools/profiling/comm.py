"""See every collective: wrappers on ``torch.distributed``'s functions and a timing comm hook on DDP.

The functions are replaced both on ``torch.distributed`` and on ``torch.distributed.distributed_c10d``,
so calls made inside c10d itself (``all_gather_object`` → ``all_gather``) and FSDP's
``dist.all_gather_into_tensor`` / ``dist.reduce_scatter_tensor`` are seen too. DDP's bucket all-reduces
come from C++; a comm hook (installed at a DDP instance's first forward when the user registered none,
else wrapped around the user's) tags the all-reduce it issues with ``via: "ddp"``. DDP's parameter and
buffer broadcasts go through ``dist._broadcast_coalesced``, wrapped too.

Per call: process group, per-group sequence number, op family, exact API, dtype, bytes (S as nccl-tests
defines it, see :data:`SPECS`), peer, caller stack, step, host entry/exit time, the compute gap before it (``gap``: since the
process last went on after a collective, docs/profile-format.md); on NPU/CUDA an event pair
on the current stream, resolved later by the writer thread (no host sync per call). A collective stays
"in flight" (for the hang watchdog) until it completes: sync calls on the host when they return, async
works when their future completes, device work when its end event completes.

Functional collectives (DTensor's, FSDP2's ``clip_grad_norm_``) are wrapped by ``funcol.py`` and share these
groups, seq counters and records. Invisible: the collectives a compiled graph calls (``torch.compile``), a function
bound before the wrappers were installed (``from torch.distributed import all_reduce`` at import time of a module
loaded earlier), and builtin C++ DDP hooks (``_register_builtin_comm_hook``). ``torch.profiler`` records those.
"""

import collections
import functools
import gc
import inspect
import sys
import threading
import time
import weakref
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .. import backend
from ..dispatch import dtype_name
from ..failopen import FailOpen
from ..stacks import StackTable

RECENT = 64  # completed collectives kept for a hang dump

Getter = Callable[..., Any]


def _nbytes(t: Any) -> int:
    return int(t.numel()) * int(t.element_size())


def _one(t: Any) -> Tuple[int, Optional[str]]:
    return _nbytes(t), dtype_name(t.dtype)


def _many(ts: Any) -> Tuple[int, Optional[str]]:
    ts = list(ts or [])
    return sum(_nbytes(t) for t in ts), (dtype_name(ts[0].dtype) if ts else None)


def _times_n(t: Any, n: int) -> Tuple[int, Optional[str]]:
    size, dtype = _one(t)
    return size * n, dtype


# api -> (op family, S and dtype from the arguments (getter by parameter name) and the group size)
SPECS: Dict[str, Tuple[str, Callable[[Getter, int], Tuple[int, Optional[str]]]]] = {
    "all_reduce": ("all_reduce", lambda a, n: _one(a("tensor"))),
    "all_reduce_coalesced": ("all_reduce", lambda a, n: _many(a("tensors"))),
    "all_gather": ("all_gather", lambda a, n: _many(a("tensor_list"))),
    "all_gather_into_tensor": ("all_gather", lambda a, n: _one(a("output_tensor"))),
    "all_gather_single": ("all_gather", lambda a, n: _one(a("output_tensor"))),
    "all_gather_coalesced": (
        "all_gather",
        lambda a, n: _many(t for ts in a("output_tensor_lists") for t in ts),
    ),
    "reduce_scatter": ("reduce_scatter", lambda a, n: _many(a("input_list"))),
    "reduce_scatter_tensor": ("reduce_scatter", lambda a, n: _one(a("input"))),
    "reduce_scatter_single": ("reduce_scatter", lambda a, n: _one(a("input"))),
    "all_to_all": ("all_to_all", lambda a, n: _many(a("input_tensor_list"))),
    "all_to_all_single": ("all_to_all", lambda a, n: _one(a("input"))),
    "broadcast": ("broadcast", lambda a, n: _one(a("tensor"))),
    "reduce": ("reduce", lambda a, n: _one(a("tensor"))),
    "gather": ("gather", lambda a, n: _times_n(a("tensor"), n)),
    "scatter": ("scatter", lambda a, n: _times_n(a("tensor"), n)),
    "barrier": ("barrier", lambda a, n: (0, None)),
    "monitored_barrier": ("barrier", lambda a, n: (0, None)),
    "send": ("send", lambda a, n: _one(a("tensor"))),
    "isend": ("send", lambda a, n: _one(a("tensor"))),
    "recv": ("recv", lambda a, n: _one(a("tensor"))),
    "irecv": ("recv", lambda a, n: _one(a("tensor"))),
    # DDP's parameter broadcast at construction and its buffer broadcast before every forward
    # (broadcast_buffers=True, the default; a Llama's rotary inv_freq, GPT-2's attention masks): blocking,
    # so a fast rank waits there for a late one
    "_broadcast_coalesced": ("broadcast", lambda a, n: _many(a("tensors"))),
}
# parameter names of the C++ bindings among SPECS, which inspect.signature cannot read
BINDING_PARAMS = {"_broadcast_coalesced": ("group", "tensors", "buffer_size", "src")}
ALWAYS_ASYNC = ("isend", "irecv")
PEER = {
    "send": ("dst", "group_dst"),
    "isend": ("dst", "group_dst"),
    "recv": ("src", "group_src"),
    "irecv": ("src", "group_src"),
}
# seen through the tensor collectives they issue, which are tagged ``via: <name>``
OBJECT_APIS = (
    "all_gather_object",
    "broadcast_object_list",
    "gather_object",
    "scatter_object_list",
    "send_object_list",
    "recv_object_list",
)
VIA_PATHS = (
    ("/distributed/fsdp/", "fsdp"),
    ("/_composable/fsdp/", "fsdp"),
    ("/pipelining/", "pipeline"),
    ("/nn/parallel/distributed.py", "ddp"),
    ("/distributed/tensor/", "dtensor"),
    ("/deepspeed/", "deepspeed"),  # its engine's collectives, through deepspeed.comm
    ("/megatron/", "megatron"),
)


def _first_tensor(fut: Any) -> Any:
    """The all-reduced bucket from an all_reduce work's future (its value is the list of its tensors)."""
    return fut.value()[0]


def _getter(pos: Dict[str, int], args: tuple, kwargs: Dict[str, Any]) -> Getter:
    def get(name: str, default: Any = None) -> Any:
        if name in kwargs:
            return kwargs[name]
        i = pos.get(name)
        return args[i] if i is not None and i < len(args) else default

    return get


class CommInterceptor(FailOpen):
    """``install()`` the wrappers, ``uninstall()`` them. ``emit`` receives one ``group``/``stack``/``coll``
    record (docs/profile-format.md) at a time; ``current_step`` says the step a call runs in."""

    def __init__(
        self,
        emit: Callable[[Dict[str, Any]], None],
        current_step: Callable[[], int],
        stack: bool = True,
        on_init: Optional[Callable[[], None]] = None,
        on_ddp: Optional[Callable[[Any], None]] = None,
    ) -> None:
        self.emit = emit
        # None: DDP's bucket all-reduces go through the profiler's timing hook; else each DDP instance is
        # handed to on_ddp instead (always-on: ddp_stats.py reads DDP's own timers, no Python hook)
        self.on_ddp = on_ddp
        self.current_step = current_step
        self.on_init = on_init
        self.stacks = StackTable() if stack else None
        self.active = False
        self.recent: Deque[Dict[str, Any]] = collections.deque(maxlen=RECENT)
        self._inflight: Dict[int, Dict[str, Any]] = {}  # id(call) -> call
        self._pending: Deque[Tuple[Dict[str, Any], Any, Any]] = collections.deque()
        # group -> info, held weakly: a group the user destroyed must go with their last reference (gloo's
        # threads stopped then), not at interpreter exit, where its C++ threads abort the process
        self._groups: weakref.WeakKeyDictionary[Any, Tuple[str, int, List[int]]] = weakref.WeakKeyDictionary()
        self._ranks: Dict[str, List[int]] = {}  # gid -> ranks, for the watchdog's thread
        self._seq: Dict[Any, int] = {}
        self._tls = threading.local()
        self._via_code: Dict[Any, Optional[str]] = {}
        self._saved: List[Tuple[Any, str, Any]] = []
        self._device = backend.detect().name != "cpu"
        self._release: Optional[float] = None  # when this process last went on after a collective

    # --- install ---------------------------------------------------------------------------------------

    def install(self) -> None:
        import torch.distributed as dist

        if not dist.is_available():
            return
        import torch.distributed.distributed_c10d as c10d

        for api in list(SPECS) + list(OBJECT_APIS) + ["init_process_group"]:
            orig = getattr(c10d, api, None) or getattr(dist, api, None)
            if orig is None:
                continue
            if api in SPECS:
                wrapped = self._wrap(api, orig)
            elif api in OBJECT_APIS:
                wrapped = self._wrap_object(api, orig)
            else:
                wrapped = self._wrap_init(orig)
            for mod in (c10d, dist):
                if getattr(mod, api, None) is orig:
                    self._saved.append((mod, api, orig))
                    setattr(mod, api, wrapped)
        self._install_ddp()
        from .funcol import FunctionalCollectives  # (it imports this module's helpers)

        FunctionalCollectives(self).install()
        self.active = True

    def _replace(self, owner: Any, name: str, orig: Any, new: Any) -> None:
        """``owner.<name> = new`` (a class's method too), undone by :meth:`uninstall`."""
        self._saved.append((owner, name, orig))
        setattr(owner, name, new)

    def uninstall(self) -> None:
        self.active = False
        for owner, name, orig in reversed(self._saved):
            setattr(owner, name, orig)
        self._saved.clear()

    def _wrap(self, api: str, orig: Callable[..., Any]) -> Callable[..., Any]:
        family, rule = SPECS[api]
        names = BINDING_PARAMS.get(api) or tuple(inspect.signature(orig).parameters)
        pos = {name: i for i, name in enumerate(names)}
        tls = self._tls

        @functools.wraps(orig)
        def collective(*args: Any, **kwargs: Any) -> Any:
            if not self.active or getattr(tls, "busy", False):
                return orig(*args, **kwargs)
            try:
                call = self._enter(api, family, rule, _getter(pos, args, kwargs))
            except Exception as exc:
                self._fail(exc)
                call = None
            if call is None:
                return orig(*args, **kwargs)
            return self.run(call, orig, args, kwargs, self._exit)

        return collective

    def run(
        self,
        call: Dict[str, Any],
        orig: Callable[..., Any],
        args: tuple,
        kwargs: Dict[str, Any],
        then: Callable[[Dict[str, Any], Any], None],
    ) -> Any:
        """Run the collective of ``call`` (entered) with the wrappers off, and hand it and its result to ``then``
        (failing open); where it raises, it is no longer in flight."""
        tls = self._tls
        tls.busy = True
        try:
            out = orig(*args, **kwargs)
        except BaseException:
            self._inflight.pop(id(call), None)
            raise
        finally:
            tls.busy = False
        try:
            then(call, out)
        except Exception as exc:
            self._fail(exc)
        return out

    def _wrap_object(self, api: str, orig: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(orig)
        def object_collective(*args: Any, **kwargs: Any) -> Any:
            prev = getattr(self._tls, "via", None)
            self._tls.via = prev or api
            try:
                return orig(*args, **kwargs)
            finally:
                self._tls.via = prev

        return object_collective

    def _wrap_init(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(orig)
        def init_process_group(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            if self.on_init is not None:
                try:
                    self.on_init()
                except Exception as exc:
                    self._fail(exc)
            return out

        return init_process_group

    # --- one call --------------------------------------------------------------------------------------

    def _group(self, group: Any) -> Optional[Tuple[str, int, List[int]]]:
        c10d = sys.modules["torch.distributed.distributed_c10d"]  # loaded by install(); no import per call
        if group is None:  # the plain attribute: group.WORLD's property costs four lookups per call
            group = getattr(c10d._world, "_default_pg", None) or c10d._get_default_group()
        try:
            info = self._groups.get(group)
        except TypeError:  # no weak reference to it: c10d's NON_GROUP_MEMBER (-100), answered below
            info = None
        if info is None:
            if c10d._rank_not_in_group(group):
                return None
            ranks = [int(r) for r in c10d.get_process_group_ranks(group)]
            gid = (
                getattr(group, "group_name", None)
                or c10d._world.pg_names.get(group)
                or ",".join(map(str, ranks))
            )
            try:
                pg_backend = str(c10d.get_backend(group))
            except Exception:
                pg_backend = None
            info = (str(gid), len(ranks), ranks)
            self._groups[group] = info
            self._ranks[info[0]] = ranks
            self.emit({"k": "group", "gid": info[0], "ranks": ranks, "backend": pg_backend})
        return info

    def _via(self) -> Optional[str]:
        via = getattr(self._tls, "via", None)
        if via is not None:
            return via
        frame = sys._getframe(3)  # _enter <- collective wrapper <- the caller
        code = frame.f_code
        if code not in self._via_code:
            name = code.co_filename.replace("\\", "/")
            self._via_code[code] = next((v for path, v in VIA_PATHS if path in name), None)
        return self._via_code[code]

    def _enter(
        self,
        api: str,
        family: str,
        rule: Callable[[Getter, int], Tuple[int, Optional[str]]],
        get: Getter,
        issued_async: bool = False,
    ) -> Optional[Dict[str, Any]]:
        """A call entered (in flight from now on); ``issued_async``: the op returns before it has run, whatever
        its arguments say (functional collectives, ``funcol.py``)."""
        group = get("group")
        info = self._group(group)
        if info is None:
            return None
        gid, n, ranks = info
        nbytes, dtype = rule(get, n)
        peer = None
        counter: Any = gid
        if api in PEER:
            name, group_name = PEER[api]
            peer = get(name)
            if peer is None and get(group_name) is not None:
                peer = ranks[int(get(group_name))]
            counter = (
                gid,
                family,
                peer,
            )  # p2p: numbered per direction and peer, apart from the group's collectives
        seq = self._seq.get(counter, 0)
        self._seq[counter] = seq + 1
        call: Dict[str, Any] = {
            "k": "coll",
            "gid": gid,
            "seq": seq,
            "op": family,
            "api": api,
            "dtype": dtype,
            "bytes": nbytes,
            "n": n,
            "peer": None if peer is None else int(peer),
            "t0": 0.0,
            "t1": None,
            "dev_ms": None,
            "async": issued_async or api in ALWAYS_ASYNC or bool(get("async_op", False)),
            "step": self.current_step(),
            "sid": self.stacks.stack_id() if self.stacks is not None else None,
            "via": self._via(),
        }
        if self.stacks is not None and self.stacks.new:
            for sid, frames in self.stacks.drain():
                self.emit({"k": "stack", "sid": sid, "frames": frames})
        self._inflight[id(call)] = call
        if self._device:
            call["_ev"] = backend.event()
            if call["_ev"] is not None:
                call["_ev"].record()
        call["t0"] = t0 = time.time()
        release = self._release
        call["gap"] = None if release is None else max(0.0, t0 - release)
        if call["async"]:
            self._release = t0  # the caller goes on at once
        return call

    def _exit(self, call: Dict[str, Any], out: Any) -> None:
        if call["api"] == "recv" and call["peer"] is None and isinstance(out, int):
            call["peer"] = out  # recv from any source returns the sender
        if not call["async"]:
            self._completed(call)
            return
        tls = self._tls
        if getattr(tls, "hand_over", False):  # the DDP hook completes it in its own callback
            tls.handed = call
            return
        fut = None
        if out is not None:
            try:
                fut = out.get_future()
            except Exception:  # a backend without futures for this work: completion is not observable
                fut = None
        if fut is None:
            self._completed(call)
        else:
            fut.add_done_callback(lambda _f: self._completed(call))  # then() would build a Future we drop

    def _completed(self, call: Dict[str, Any]) -> None:
        """Host side done (sync return, or async future callback). On a device, the end event is recorded
        on the current stream and the record waits in ``_pending`` for :meth:`resolve`."""
        try:
            call["t1"] = t1 = time.time()
            release = self._release
            self._release = t1 if release is None else max(release, t1)
            ev0 = call.pop("_ev", None)
            if ev0 is not None:
                ev1 = backend.event()
                if ev1 is not None:
                    ev1.record()
                    self._pending.append((call, ev0, ev1))
                    return
            self._finish(call)
        except Exception as exc:
            self._fail(exc)

    def _finish(self, call: Dict[str, Any]) -> None:
        self._inflight.pop(id(call), None)
        self.recent.append(call)
        self.emit(call)

    def resolve(self) -> None:
        """Finish the device-timed records whose end event completed (the writer thread calls this)."""
        for _ in range(len(self._pending)):
            call, ev0, ev1 = self._pending.popleft()
            if ev1.query():
                call["dev_ms"] = float(ev0.elapsed_time(ev1))
                self._finish(call)
            else:
                self._pending.append((call, ev0, ev1))

    def inflight(self) -> List[Dict[str, Any]]:
        """Collectives entered and not completed, with their group's ranks (for the hang watchdog)."""
        ranks = self._ranks.copy()  # one C call: safe against the training thread adding a group
        return [
            dict({k: v for k, v in c.items() if not k.startswith("_")}, ranks=ranks.get(c["gid"]))
            for c in list(self._inflight.values())
        ]

    def recent_records(self) -> List[Dict[str, Any]]:
        return list(self.recent)

    def _fail_message(self) -> str:
        return "profile: a collective was not recorded (training goes on)"

    # --- DDP -------------------------------------------------------------------------------------------

    def _install_ddp(self) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        interceptor = self
        orig_init, orig_register = DDP.__init__, DDP.register_comm_hook
        orig_builtin = getattr(DDP, "_register_builtin_comm_hook", None)

        @functools.wraps(orig_init)
        def __init__(ddp: Any, *args: Any, **kwargs: Any) -> None:
            orig_init(ddp, *args, **kwargs)
            interceptor._watch_ddp(ddp)

        @functools.wraps(orig_register)
        def register_comm_hook(ddp: Any, state: object, hook: Callable[..., Any]) -> None:
            orig_register(ddp, state, interceptor._tag_hook(hook))

        self._orig_register = orig_register
        self._replace(DDP, "__init__", orig_init, __init__)
        self._replace(DDP, "register_comm_hook", orig_register, register_comm_hook)
        if orig_builtin is not None:

            @functools.wraps(orig_builtin)
            def _register_builtin_comm_hook(ddp: Any, comm_hook_type: Any) -> None:
                ddp._ascend_doctor_builtin_hook = True
                orig_builtin(ddp, comm_hook_type)

            self._replace(DDP, "_register_builtin_comm_hook", orig_builtin, _register_builtin_comm_hook)
        import torch.distributed as dist

        if dist.is_initialized():  # instances built before the profiler started
            for obj in gc.get_objects():
                if issubclass(type(obj), DDP):  # type(): no __getattr__ on arbitrary objects
                    self._watch_ddp(obj)

    def _watch_ddp(self, ddp: Any) -> None:
        """Install the timing hook at the instance's next forward (after the user had the chance to
        register their own, which is then wrapped instead)."""
        if getattr(ddp, "_ascend_doctor_watched", False):
            return
        ddp._ascend_doctor_watched = True
        if self.on_ddp is not None:
            try:
                self.on_ddp(ddp)
            except Exception as exc:
                self._fail(exc)
            return
        handle: List[Any] = []

        def first_forward(module: Any, _inputs: Any) -> None:
            handle.pop().remove()
            try:
                if (
                    self.active
                    and not module._comm_hooks
                    and not getattr(module, "_ascend_doctor_builtin_hook", False)
                ):
                    self._orig_register(module, module.process_group, self._ddp_allreduce_hook())
            except Exception as exc:
                self._fail(exc)

        handle.append(ddp.register_forward_pre_hook(first_forward))

    def _ddp_allreduce_hook(self) -> Callable[..., Any]:
        """DDP's default reduction as a comm hook tagged ``via: "ddp"``: each rank's bucket divided by the
        group size, then summed (``default_hooks.allreduce_hook``'s order: no fp16 overflow in the sum), with
        no division on a one-rank group (x / 1 = x: one pass over the bucket saved; DDP without a hook
        divides while copying gradients into the bucket, a hook needs a pass of its own)."""
        import torch
        import torch.distributed as dist

        tls = self._tls

        def ddp_allreduce(
            process_group: Any, bucket: dist.GradBucket
        ) -> torch.futures.Future[torch.Tensor]:  # DDP checks these two annotations
            group: Any = process_group if process_group is not None else dist.group.WORLD
            buffer = bucket.buffer()
            size = group.size()
            if size > 1:
                buffer.div_(size)
            tls.via, tls.hand_over, tls.handed = "ddp", True, None
            try:
                work = dist.all_reduce(buffer, group=group, async_op=True)
            finally:
                tls.via, tls.hand_over = None, False
            call, tls.handed = tls.handed, None
            if call is None:  # not recorded (profiler off, or failed open)
                return work.get_future().then(_first_tensor)
            return work.get_future().then(functools.partial(self._bucket_done, call))

        return ddp_allreduce

    def _bucket_done(self, call: Dict[str, Any], fut: Any) -> Any:
        """The DDP hook's one completion callback (two, ours and the hook's ``then``, cost a second Python
        call with the GIL in the backend's thread per bucket): record the completion, hand the bucket on."""
        self._completed(call)  # fails open
        return fut.value()[0]

    def _tag_hook(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """``hook`` with the collectives it issues tagged ``via: "ddp"``; the
        signature (DDP checks the ``bucket`` annotation) and the name are the hook's own."""
        tls = self._tls

        @functools.wraps(hook)
        def tagged(state: object, bucket: Any) -> Any:
            prev = getattr(tls, "via", None)
            tls.via = "ddp"
            try:
                return hook(state, bucket)
            finally:
                tls.via = prev

        return tagged
