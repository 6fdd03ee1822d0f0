"""Record every aten overload a model reaches at dispatch level, forward and backward.

One :class:`OpTraceMode` (a TorchDispatchMode) appends an :class:`OpEvent` per call; the model runs on
the meta device (or fake CPU tensors under ``--autocast``), so a 7B model costs no real memory.

Two places where what the meta device runs differs from what an NPU runs are handled here:

* **CompositeImplicitAutograd ops that torch_npu overrides** (``scaled_dot_product_attention``,
  ``matmul``, ``softmax.int``, ...): PyTorch decomposes them before dispatch, torch_npu does not.
  :class:`FusedCallMode` (a TorchFunctionMode) records the Python-level call as a ``parent`` event and
  tags the decomposition's events with it; the verdict layer keeps one or the other depending on
  whether the chosen torch_npu version has the kernel.
* **CompositeExplicitAutograd ops without an NPU kernel** (``cummax`` → ``_cummax_helper``): the
  mode re-dispatches them to their composite kernel with itself still active, so the ops they
  decompose into are recorded too (``via`` names the composite).
"""

import contextlib
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..dispatch import ModulePath, dtype_name, in_backward, op_name
from ..stacks import user_site
from . import restrictions
from .events import OpEvent, TraceResult

# Python-level callables (by __name__) of CompositeImplicitAutograd ops that torch_npu registers
# its own kernel for (from the torch_npu 2.14.0 op table), mapped to the aten op they stand for.
FUSED_PYTHON_CALLS: Dict[str, str] = {
    "scaled_dot_product_attention": "aten::scaled_dot_product_attention",
    "matmul": "aten::matmul",
    "__matmul__": "aten::matmul",
    "__rmatmul__": "aten::matmul",
    "softmax": "aten::softmax.int",
    "where": "aten::where",
    "one_hot": "aten::one_hot",
    "kl_div": "aten::kl_div",
    "l1_loss": "aten::l1_loss",
    "isclose": "aten::isclose",
    "isfinite": "aten::isfinite",
    "argsort": "aten::argsort",
    "inverse": "aten::inverse",
    "cdist": "aten::cdist",
    "logsigmoid": "aten::log_sigmoid",
    "stft": "aten::stft",
    "repeat_interleave": "aten::repeat_interleave.self_int",
    "adaptive_avg_pool2d": "aten::adaptive_avg_pool2d",
    "slogdet": "aten::slogdet",
    "fftshift": "aten::fft_fftshift",
    "ifftshift": "aten::fft_ifftshift",
}


def _grouped_mm_shape(
    a: torch.Tensor, b: torch.Tensor, offs: Any = None, bias: Any = None, out_dtype: Any = None
) -> torch.Tensor:
    """``aten::_grouped_mm``: [M, K] x [G, K, N] -> [M, N]; [G, M, K] x [G, K, N] -> [G, M, N];
    [M, K] x [K, N] grouped along K -> [G, M, N]."""
    shape: Tuple[int, ...]
    if a.dim() == 2 and b.dim() == 3:
        shape = (a.shape[0], b.shape[2])
    elif a.dim() == 3 and b.dim() == 3:
        shape = (a.shape[0], a.shape[1], b.shape[2])
    elif a.dim() == 2 and b.dim() == 2 and offs is not None:
        shape = (offs.shape[0], a.shape[0], b.shape[1])
    else:
        raise NotImplementedError(f"_grouped_mm of {a.dim()}-d x {b.dim()}-d inputs")
    return a.new_empty(shape, dtype=out_dtype or a.dtype)


def _nonzero_all(t: torch.Tensor) -> torch.Tensor:
    """``aten::nonzero`` as if every element were non-zero (torch's own ``meta_nonzero_assume_all_nonzero``):
    a Mixture-of-Experts loop over the experts that got tokens then runs every expert once."""
    return t.new_empty((t.numel(), t.dim()), dtype=torch.long)


def _scalar_one(t: torch.Tensor) -> Any:
    """``Tensor.item()`` reads 1 (``True``): non-zero, like :func:`_nonzero_all`, and what an all-ones
    attention mask gives ``if torch.all(mask == 1)``; a tensor used as an index picks an existing item."""
    return torch.ones((), dtype=t.dtype).item()


def _host_keeps_its_values(dst: torch.Tensor, src: Any, non_blocking: bool = False) -> torch.Tensor:
    """``host.copy_(accelerator_tensor)`` (ZeRO-3 copying a parameter into its CPU-offloaded partition): the
    fake accelerator's tensor has no values, so the host buffer keeps its own. Any other failed copy is
    not this rule's (NotImplemented: the op's own error stands)."""
    if not (isinstance(src, torch.Tensor) and src.is_meta and not dst.is_meta):
        return NotImplemented
    return dst


def _host_zeros(t: torch.Tensor, *, dtype: Any = None, device: Any = None, **_: Any) -> torch.Tensor:
    """``accelerator_tensor.cpu()`` / ``.to("cpu")``: a host tensor of the same shape, zeros standing for
    the values the fake accelerator does not have."""
    if not (t.is_meta and device is not None and torch.device(device).type == "cpu"):
        return NotImplemented
    return torch.zeros(t.shape, dtype=dtype or t.dtype, device=device)


# Output rules for ops whose meta kernel or composite cannot run on meta tensors here (data-dependent
# shapes and values, CUDA-only dtype checks in the meta kernel), so the trace can go on past them. The op
# itself is recorded as usual; only its output is made up: from its documented shape semantics, or, for the
# data-dependent ones, from the assumption that the data is non-zero (docs/check-ops.md). A rule returns
# NotImplemented where the failure is not the one it stands in for: the op's own error then stands.
SHAPE_FALLBACKS: Dict[str, Callable[..., Any]] = {
    "aten::_grouped_mm": _grouped_mm_shape,
    "aten::nonzero": _nonzero_all,
    "aten::_local_scalar_dense": _scalar_one,
    "aten::copy_": _host_keeps_its_values,
    "aten::_to_copy": _host_zeros,
}
#: the rules above whose output stands for data the meta device does not have: the report lists them
DATA_DEPENDENT = frozenset({"aten::nonzero", "aten::_local_scalar_dense", "aten::copy_", "aten::_to_copy"})

_COMPOSITE_KEYS = (
    torch._C.DispatchKey.CompositeExplicitAutograd,
    torch._C.DispatchKey.CompositeExplicitAutogradNonFunctional,
)


def _tensor_facts(args: Any, kwargs: Any) -> Tuple[Tuple[str, ...], Tuple[Tuple[int, ...], ...], bool]:
    flat, _ = tree_flatten((args, kwargs))
    tensors = [t for t in flat if isinstance(t, torch.Tensor)]
    dtypes = tuple(dtype_name(t.dtype) for t in tensors)
    shapes = tuple(tuple(int(s) for s in t.shape) if t.layout == torch.strided else () for t in tensors)
    sparse = any(t.layout != torch.strided for t in tensors)
    return dtypes, shapes, sparse


def on_host(*values: Any) -> bool:
    """Whether the tensors among ``values`` (a call's arguments and results) are all real host tensors, at least
    one: not meta tensors, nor the fake CPU tensors ``--autocast`` traces, which stand for the accelerator's."""
    flat, _ = tree_flatten(values)
    seen = False
    for t in flat:
        if isinstance(t, torch.Tensor):
            if t.device.type != "cpu" or isinstance(t, FakeTensor):
                return False
            seen = True
    return seen


class OpTraceMode(TorchDispatchMode):
    """Appends an :class:`OpEvent` for every op that reaches dispatch while active."""

    def __init__(self, modules: ModulePath, expand: Optional[Callable[[str], bool]] = None) -> None:
        super().__init__()
        self.events: List[OpEvent] = []
        # (op, input dtypes) -> where the model code first called it so (forward only)
        self.sites: Dict[Tuple[str, Tuple[str, ...]], str] = {}
        self.modules = modules
        self.parent = -1  # set by FusedCallMode
        self.in_optimizer = False  # inside optimizer.step() (step_trace.StepTrace sets it: begin_optimizer)
        # the events since the last backward op that ran outside every module, while no module forward has run
        # since: the optimizer's if optimizer.step() comes next (begin_optimizer), else a next forward's
        self._after_backward: Optional[List[int]] = None
        self._expand = expand or (lambda name: False)
        self._via: List[str] = []
        # data-dependent op -> where the model code first needed its value (made up, see SHAPE_FALLBACKS)
        self.assumed: Dict[str, str] = {}

    def record(self, name: str, args: Any, kwargs: Any, is_parent: bool = False) -> int:
        dtypes, shapes, sparse = _tensor_facts(args, kwargs)
        backward = in_backward()
        if (name, dtypes) not in self.sites and not backward:
            self.sites[name, dtypes] = user_site()
        self.events.append(
            OpEvent(
                op=name,
                phase="optimizer" if self.in_optimizer else "backward" if backward else "forward",
                module=self.modules.current(),
                dtypes=dtypes,
                shapes=shapes,
                sparse=sparse,
                via=self._via[-1] if self._via else "",
                parent=self.parent,
                is_parent=is_parent,
            )
        )
        if backward:
            self._after_backward = []
        elif self._after_backward is not None and not self.in_optimizer:
            if self.modules.running():  # a forward again (a next micro-batch): the ops before it were its own
                self._after_backward = None
            else:
                self._after_backward.append(len(self.events) - 1)
        flags = restrictions.call_flags(name, args, kwargs)
        if flags:
            self.events[-1].flags = flags
            self.events[-1].flag_site = "" if backward else user_site()
        return len(self.events) - 1

    def begin_optimizer(self) -> None:
        """``optimizer.step()`` starts: its ops are the optimizer's, and so are those between the backward and it
        (gradient clipping's norms and scaling, a GradScaler's ``unscale_``), which ran outside every module and
        were traced as forward ops until now."""
        for i in self._after_backward or ():
            self.events[i].phase = "optimizer"
        self._after_backward = None
        self.in_optimizer = True

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.prim.device.default:
            # a metadata query FakeTensor answers in its own subclass dispatch, which a mode above
            # FakeTensorMode bypasses: answer it here (the fake device, not the meta storage's)
            return args[0].device
        name = op_name(func)
        index = self.record(name, args, kwargs)
        out = self._run(func, name, index, args, kwargs)
        self.events[index].host = on_host(args, kwargs, out)
        return out

    def _run(self, func: Any, name: str, index: int, args: Any, kwargs: Any) -> Any:
        if name not in self._via and self._expand(name):
            key = next((k for k in _COMPOSITE_KEYS if func.has_kernel_for_dispatch_key(k)), None)
            if key is not None:
                self._via.append(name)
                try:
                    with self:
                        return func._op_dk(key, *args, **kwargs)
                except Exception:
                    # The composite kernel cannot finish on meta tensors, typically because an op it calls
                    # has no meta kernel (cummax.out -> _cummax_helper). Keep the children recorded so far,
                    # that op included: they are what the NPU runs, and dropping them would make the
                    # composite look like a metadata-only kernel. Its own meta kernel makes the outputs.
                    self.events[index].partly_expanded = True
                finally:
                    self._via.pop()
        try:
            return func(*args, **kwargs)
        except Exception:
            fallback = SHAPE_FALLBACKS.get(name)
            out = NotImplemented if fallback is None else fallback(*args, **kwargs)
            if out is NotImplemented:
                raise
            if name in DATA_DEPENDENT:
                self.assumed.setdefault(name, user_site())
            return out


class FusedCallMode(TorchFunctionMode):
    """Marks Python-level calls of ops torch_npu runs fused (see ``FUSED_PYTHON_CALLS``)."""

    def __init__(self, ops: OpTraceMode) -> None:
        super().__init__()
        self.ops = ops

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = FUSED_PYTHON_CALLS.get(getattr(func, "__name__", ""))
        if name is None or self.ops.parent != -1 or in_backward():
            return func(*args, **kwargs)
        index = self.ops.parent = self.ops.record(name, args, kwargs, is_parent=True)
        try:
            out = func(*args, **kwargs)
        finally:
            self.ops.parent = -1
        self.ops.events[index].host = on_host(args, kwargs, out)
        return out


def scalar_loss(output: Any) -> torch.Tensor:
    """The loss to call ``backward`` on: ``output.loss`` when the model computed one, else the
    sum of the first floating-point tensor in the output (a stand-in with the same graph)."""
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    if isinstance(output, dict):
        output = list(output.values())
    flat, _ = tree_flatten(output)
    for t in flat:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad:
            return t.float().sum()
    raise ValueError("the model's output has no floating-point tensor that requires grad to take a loss from")


def run_traced(
    model: torch.nn.Module,
    call: Callable[[], Any],
    backward: bool = True,
    expand: Optional[Callable[[str], bool]] = None,
    outer: Sequence[ContextManager[Any]] = (),
) -> TraceResult:
    """Run ``call()`` (the model's forward) under the trace, then the loss's backward.

    ``outer`` contexts are entered before the trace's modes (a FakeTensorMode must sit below them).
    An op that cannot run on meta tensors (no meta kernel, data-dependent shapes) stops the trace;
    the events up to it are kept and ``error`` says which op stopped it."""
    result = TraceResult(backward=backward)
    with ModulePath() as modules, contextlib.ExitStack() as stack, meta_autocast_as_cpu():
        for ctx in outer:
            stack.enter_context(ctx)
        modules.name_modules(model)
        ops = OpTraceMode(modules, expand)
        try:
            with ops, FusedCallMode(ops):
                output = call()
                loss = scalar_loss(output)
                if backward:
                    loss.backward()
        except Exception as exc:  # report where the trace stopped; keep what was recorded
            last = ops.events[-1].op if ops.events else "(before the first op)"
            result.error = f"trace stopped at {last}: {type(exc).__name__}: {_first_line(exc)}"
        result.events = ops.events
        result.sites = ops.sites
        result.assumed = ops.assumed
    return result


@contextlib.contextmanager
def meta_autocast_as_cpu() -> Iterator[None]:
    """Recent torch rejects ``torch.autocast(device_type="meta")`` ("unsupported scalarType"), which
    transformers 4.x's rotary embeddings enter with their input's device type. Autocast never applies to
    meta tensors, so during a trace a meta autocast is entered as a CPU one, which leaves meta tensors
    alone just the same."""
    original = torch.autocast

    class MetaAsCpuAutocast(original):  # type: ignore[misc, valid-type]
        def __init__(self, device_type: str, *args: Any, **kwargs: Any) -> None:
            super().__init__("cpu" if device_type == "meta" else device_type, *args, **kwargs)

    # the queries too (trl's chunked log-prob asks torch.is_autocast_enabled(hidden.device.type))
    queries = {name: getattr(torch, name, None) for name in ("is_autocast_enabled", "get_autocast_dtype")}
    torch.autocast = torch.amp.autocast = MetaAsCpuAutocast  # type: ignore[misc]
    for name, query in queries.items():
        if query is not None:
            setattr(torch, name, _meta_as_cpu(query))
    try:
        yield
    finally:
        torch.autocast = torch.amp.autocast = original  # type: ignore[misc]
        for name, query in queries.items():
            if query is not None:
                setattr(torch, name, query)


def _meta_as_cpu(query: Callable[..., Any]) -> Callable[..., Any]:
    def ask(*args: Any) -> Any:
        return query(*("cpu" if a == "meta" else a for a in args))

    return ask


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
