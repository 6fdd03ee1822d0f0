"""Stand-ins for CUDA-only packages the user's script imports, so the check-ops child runs it anyway.

:class:`StandInFinder` (a meta path finder, installed in the check-ops child only) answers an import of a
known CUDA-only package that is not installed (flash_attn, xformers, apex, bitsandbytes, liger_kernel,
mamba_ssm, causal_conv1d, deepspeed.ops, a project's ``*_cuda`` extension) with a recording module. Where
the package is on the model path its stand-in has reference semantics, so the trace goes on with the right
shapes and dtypes: ``flash_attn_func`` is SDPA in flash-attn's (batch, seq, heads, dim) layout, FusedAdam and
the 8-bit optimizers are AdamW, ``Linear4bit`` is ``nn.Linear``, FusedLayerNorm is ``nn.LayerNorm``. Any
other attribute is an opaque callable that returns its first tensor argument. Every import and call is a
:class:`Use` at the user's ``file:line``, which the report lists with the Ascend replacement.
"""

import importlib
import importlib.abc
import importlib.machinery
import math
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..stacks import is_library
from . import bnb_optimizer
from .config_components import names_module
from .user_code import installed


@dataclass(frozen=True)
class Package:
    rule: str  # the static scan's rule name (source_rules.py)
    replacement: str
    version: str = ""  # the stand-in's ``__version__``: the current release, where scripts read it


PACKAGES: Dict[str, Package] = {
    "flash_attn": Package(
        "lib-flash-attn",
        'torch_npu.npu_fusion_attention(q, k, v, head_num=H, input_layout="BSND", scale=1/math.sqrt(D), '
        "sparse_mode=3 for causal)[0], or F.scaled_dot_product_attention",
    ),
    "flash_attn_2_cuda": Package("lib-flash-attn", "torch_npu.npu_fusion_attention"),
    "rotary_emb": Package("lib-flash-attn", "torch_npu.npu_rotary_mul(x, cos, sin)"),
    "xentropy_cuda_lib": Package("lib-flash-attn", "torch.nn.functional.cross_entropy"),
    "dropout_layer_norm": Package(
        "lib-flash-attn", "torch_npu.npu_rms_norm / torch.nn.functional.layer_norm"
    ),
    "xformers": Package(
        "lib-xformers",
        'torch_npu.npu_fusion_attention(q, k, v, head_num=H, input_layout="BSND", ...)[0]',
        "0.0.35",
    ),
    "apex": Package(
        "lib-apex", "torch.optim.AdamW(fused=True) / torch.nn.LayerNorm / torch.autocast (or Ascend's apex)"
    ),
    "bitsandbytes": Package("lib-bitsandbytes", "torch.optim.AdamW; bf16 weights (no 4/8-bit on NPU)"),
    "liger_kernel": Package(
        "lib-triton", "ascend_tools.patch (fused RMSNorm, SwiGLU, RoPE, linear cross-entropy)"
    ),
    "mamba_ssm": Package("lib-mamba-ssm", "the reference (PyTorch) selective scan"),
    "causal_conv1d": Package("lib-causal-conv1d", "torch.nn.functional.conv1d with left padding"),
    "deepspeed.ops": Package("lib-deepspeed-ops", "DeepSpeed's NPU op builders (deepspeed-npu) or torch ops"),
    "triton": Package("lib-triton", "triton-ascend (kernels need retuning) or torch ops"),
}
#: how any other missing module whose name says CUDA is reported
CUDA_EXTENSION = Package("cuda-extension", "a torch/torch_npu implementation, or an Ascend C custom op")


@dataclass
class Use:
    module: str
    what: str  # "import", or the attribute called
    site: Tuple[str, int]  # the user's (file, line)
    package: Package


class Recorder:
    """The uses seen, first per (site, what)."""

    def __init__(self) -> None:
        self.uses: List[Use] = []
        self._seen: set = set()

    def note(self, module: str, what: str, package: Package, site: Optional[Tuple[str, int]] = None) -> None:
        """``site``: the user's (file, line), where an installed library made the call for it."""
        site = site or _user_frame()
        if site is None or (site, module, what) in self._seen:
            return
        self._seen.add((site, module, what))
        self.uses.append(Use(module, what, site, package))

    def findings(self) -> List[Dict[str, Any]]:
        return [
            {
                "file": u.site[0],
                "line": u.site[1],
                "col": 0,
                "rule": u.package.rule,
                "severity": "error",
                "message": "{}: {} is not installed here and has no Ascend build (ran on a stand-in{})".format(
                    u.module if u.what == "import" else f"{u.module}.{u.what}()",
                    u.module.split(".")[0],
                    ", reference semantics" if u.what in _REFERENCE_NAMES else "",
                ),
                "suggestion": u.package.replacement,
            }
            for u in self.uses
        ]


def _user_frame() -> Optional[Tuple[str, int]]:
    """The user's (file, line) that made the use; None when an installed library made it (DeepSpeed's own
    ``@torch.compile`` helpers are not the script's to port)."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not is_library(name) and "importlib" not in name and name != __file__:
            return None if installed(name) else (name, frame.f_lineno)
        frame = frame.f_back
    return None


# ---- reference semantics ------------------------------------------------------------------------------


def _repeat_kv(q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """(B, H_kv, S, D) -> (B, H_q, S, D): grouped-query attention as flash-attn runs it."""
    groups = q.shape[1] // kv.shape[1]
    return kv if groups == 1 else kv.repeat_interleave(groups, dim=1)


def flash_attn_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    *args: Any,
    **kwargs: Any,
) -> torch.Tensor:
    """flash-attn 2: q/k/v (batch, seq, heads, head_dim) -> same layout; scale default 1/sqrt(head_dim)."""
    q_, k_, v_ = (t.transpose(1, 2) for t in (q, k, v))
    k_, v_ = _repeat_kv(q_, k_), _repeat_kv(q_, v_)
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    out = F.scaled_dot_product_attention(q_, k_, v_, dropout_p=dropout_p, is_causal=causal, scale=scale)
    return out.transpose(1, 2)


def flash_attn_qkvpacked_func(qkv: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """qkv (batch, seq, 3, heads, head_dim)."""
    return flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], *args, **kwargs)


def flash_attn_kvpacked_func(q: torch.Tensor, kv: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """kv (batch, seq, 2, heads_kv, head_dim)."""
    return flash_attn_func(q, kv[:, :, 0], kv[:, :, 1], *args, **kwargs)


def memory_efficient_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_bias: Any = None,
    p: float = 0.0,
    scale: Any = None,
    **_: Any,
) -> torch.Tensor:
    """xformers: (batch, seq, heads, head_dim); a LowerTriangularMask bias is causal attention, a
    BlockDiagonalCausalMask causal attention within each packed sequence. The output is contiguous, as
    xformers' is (callers ``.view`` it)."""
    if isinstance(attn_bias, BlockDiagonalCausalMask):
        q_, k_, v_ = (t.transpose(1, 2) for t in (q, k, v))
        allowed = attn_bias.allowed().to(q.device)
        out = F.scaled_dot_product_attention(q_, k_, v_, attn_mask=allowed, dropout_p=p, scale=scale)
        return out.transpose(1, 2).contiguous()
    causal = isinstance(attn_bias, LowerTriangularMask)
    return flash_attn_func(q, k, v, dropout_p=p, softmax_scale=scale, causal=causal).contiguous()


class LowerTriangularMask:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


class BlockDiagonalCausalMask:
    """xformers' mask for sequences packed along one axis (``from_seqlens([3, 5])``): a query attends to
    the keys of its own sequence at or before its position."""

    def __init__(self, seqlens: List[int]) -> None:
        self.seqlens = seqlens

    @classmethod
    def from_seqlens(cls, q_seqlen: Any, kv_seqlen: Any = None, **_: Any) -> "BlockDiagonalCausalMask":
        if kv_seqlen is not None and list(kv_seqlen) != list(q_seqlen):
            raise NotImplementedError("check-ops' BlockDiagonalCausalMask: kv_seqlen differing from q_seqlen")
        return cls(list(q_seqlen))

    def allowed(self) -> torch.Tensor:
        """(S, S) bool, True where query i may attend to key j (host: S is the packed length)."""
        sequence = torch.repeat_interleave(torch.arange(len(self.seqlens)), torch.tensor(self.seqlens))
        same = sequence[:, None] == sequence[None, :]
        return same & torch.ones_like(same).tril()


class AdamW(torch.optim.AdamW):
    """FusedAdam, Adam8bit/AdamW8bit/PagedAdamW*: AdamW's update (their extra arguments dropped)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: Any = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        **_: Any,
    ) -> None:
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


class Linear(torch.nn.Linear):
    """bitsandbytes Linear4bit/Linear8bitLt: ``nn.Linear`` (the quantisation options dropped)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=kwargs.get("device"))


class LayerNorm(torch.nn.LayerNorm):
    """apex FusedLayerNorm / MixedFusedLayerNorm."""

    def __init__(
        self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True, **_: Any
    ) -> None:
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)


class RMSNorm(torch.nn.Module):
    """apex FusedRMSNorm: x * rsqrt(mean(x^2) + eps) * weight."""

    def __init__(
        self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True, **_: Any
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def amp_initialize(models: Any, optimizers: Any = None, *args: Any, **kwargs: Any) -> Any:
    """apex.amp.initialize: returns what it got (the trace runs without O1/O2 casting)."""
    return models if optimizers is None else (models, optimizers)


class _ScaleLoss:
    def __init__(self, loss: Any, *args: Any, **kwargs: Any) -> None:
        self.loss = loss

    def __enter__(self) -> Any:
        return self.loss

    def __exit__(self, *exc: Any) -> None:
        return None


def dropout_add_ln_fwd(
    x0: torch.Tensor,
    residual: Optional[torch.Tensor],
    gamma: torch.Tensor,
    beta: Optional[torch.Tensor],
    rowscale: Any,
    colscale: Any,
    x0_subset: Any,
    z_subset: Any,
    dropout_p: float,
    epsilon: float,
    *args: Any,
) -> Tuple[Any, ...]:
    """flash-attn's dropout_layer_norm forward over (rows, hidden): x = dropout(x0) + residual, then
    LayerNorm (or RMSNorm when the last argument, is_rms_norm, is true); returns z, x, dmask, mu, rsigma."""
    is_rms_norm = bool(args[-1]) if args else False
    x = x0 if rowscale is None else x0 * rowscale[:, None]
    x = x if colscale is None else x * colscale
    dmask = None
    if dropout_p > 0:
        dmask = torch.rand_like(x, dtype=torch.float32) >= dropout_p
        x = x * dmask / (1 - dropout_p)
    if residual is not None:
        x = x + residual
    xf = x.float()
    mu = torch.zeros_like(xf[:, 0]) if is_rms_norm else xf.mean(-1)
    centred = xf if is_rms_norm else xf - mu[:, None]
    rsigma = torch.rsqrt(centred.pow(2).mean(-1) + epsilon)
    z = centred * rsigma[:, None] * gamma.float()
    if beta is not None and not is_rms_norm:
        z = z + beta.float()
    return z.to(x0.dtype), x, dmask, mu, rsigma


def dropout_add_ln_bwd(
    dz: torch.Tensor,
    dx: Optional[torch.Tensor],
    x: torch.Tensor,
    x0: Any,
    dmask: Optional[torch.Tensor],
    mu: torch.Tensor,
    rsigma: torch.Tensor,
    gamma: torch.Tensor,
    rowscale: Any,
    colscale: Any,
    x0_subset: Any,
    z_subset: Any,
    dropout_p: float,
    *args: Any,
) -> Tuple[Any, ...]:
    """The gradients of :func:`dropout_add_ln_fwd` (is_rms_norm and has_residual are its last arguments):
    dx0, dresidual, dgamma, dbeta, and the two partial sums (here the sums themselves)."""
    is_rms_norm = bool(args[-1]) if args else False
    has_residual = bool(args[-2]) if len(args) > 1 else False
    xf, r = x.float(), rsigma[:, None]
    xhat = (xf if is_rms_norm else xf - mu[:, None]) * r
    g = dz.float() * gamma.float()
    inner = g - (g * xhat).mean(-1, keepdim=True) * xhat
    if not is_rms_norm:
        inner = inner - g.mean(-1, keepdim=True)
    dxf = inner * r + (dx.float() if dx is not None else 0)
    dgamma = (dz.float() * xhat).sum(0).to(gamma.dtype)
    dbeta = dz.float().sum(0).to(gamma.dtype)
    dx0 = dxf if dmask is None else dxf * dmask / (1 - dropout_p)
    dresidual = dxf.to(x.dtype) if has_residual else None
    return dx0.to(x.dtype), dresidual, dgamma, dbeta, dgamma, dbeta


def xentropy_forward(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0, total_classes: int = -1
) -> Tuple[torch.Tensor, torch.Tensor]:
    """flash-attn's xentropy_cuda_lib.forward: per-row losses (label-smoothed cross-entropy) and the
    row log-sum-exp, in float32."""
    lf = logits.float()
    lse = torch.logsumexp(lf, -1)
    picked = lf.gather(-1, labels.clamp(min=0)[:, None])[:, 0]
    losses = lse - (1 - smoothing) * picked - smoothing * lf.mean(-1)
    return losses, lse


def xentropy_backward(
    grad_loss: torch.Tensor,
    logits: torch.Tensor,
    lse: torch.Tensor,
    labels: torch.Tensor,
    smoothing: float = 0.0,
    *args: Any,
) -> torch.Tensor:
    """The gradient of :func:`xentropy_forward` with respect to the logits."""
    probs = torch.exp(logits.float() - lse[:, None])
    target = torch.full_like(probs, smoothing / probs.shape[-1])
    target.scatter_add_(-1, labels.clamp(min=0)[:, None], torch.full_like(probs[:, :1], 1 - smoothing))
    return ((probs - target) * grad_loss[:, None]).to(logits.dtype)


#: (module, attribute) -> reference implementation
REFERENCE: Dict[Tuple[str, str], Any] = {}
for _mod in ("flash_attn", "flash_attn.flash_attn_interface"):
    REFERENCE.update(
        {
            (_mod, "flash_attn_func"): flash_attn_func,
            (_mod, "flash_attn_qkvpacked_func"): flash_attn_qkvpacked_func,
            (_mod, "flash_attn_kvpacked_func"): flash_attn_kvpacked_func,
        }
    )
REFERENCE.update(
    {
        ("xformers.ops", "memory_efficient_attention"): memory_efficient_attention,
        ("xformers.ops", "LowerTriangularMask"): LowerTriangularMask,
        ("xformers.ops.fmha.attn_bias", "LowerTriangularMask"): LowerTriangularMask,
        ("xformers.ops.fmha", "memory_efficient_attention"): memory_efficient_attention,
        ("xformers.ops.fmha.attn_bias", "BlockDiagonalCausalMask"): BlockDiagonalCausalMask,
        ("apex.optimizers", "FusedAdam"): AdamW,
        ("apex.normalization", "FusedLayerNorm"): LayerNorm,
        ("apex.normalization", "MixedFusedLayerNorm"): LayerNorm,
        ("apex.normalization", "FusedRMSNorm"): RMSNorm,
        ("apex.amp", "initialize"): amp_initialize,
        ("apex.amp", "scale_loss"): _ScaleLoss,
        ("apex.parallel", "convert_syncbn_model"): torch.nn.SyncBatchNorm.convert_sync_batchnorm,
        ("xentropy_cuda_lib", "forward"): xentropy_forward,
        ("xentropy_cuda_lib", "backward"): xentropy_backward,
        ("dropout_layer_norm", "dropout_add_ln_fwd"): dropout_add_ln_fwd,
        ("dropout_layer_norm", "dropout_add_ln_bwd"): dropout_add_ln_bwd,
        ("bitsandbytes.nn", "Linear4bit"): Linear,
        ("bitsandbytes.nn", "Linear8bitLt"): Linear,
    }
)
for _name in ("Adam8bit", "AdamW8bit", "PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "AdamW", "Adam"):
    REFERENCE["bitsandbytes.optim", _name] = AdamW
REFERENCE["bitsandbytes.optim.optimizer", "Optimizer2State"] = bnb_optimizer.Optimizer2State
_REFERENCE_NAMES = {name for _, name in REFERENCE}


# ---- the import hook -----------------------------------------------------------------------------------


def package_of(fullname: str) -> Optional[Package]:
    """The known package (or CUDA extension) ``fullname`` belongs to, None for any other module."""
    for name, package in PACKAGES.items():
        if fullname == name or fullname.startswith(name + "."):
            return package
    last = fullname.rsplit(".", 1)[-1]
    if last.endswith(("_cuda", "_cuda_lib", "_cuda_ext")) or last.startswith("cuda_"):
        return CUDA_EXTENSION
    return None


class StandInModule(types.ModuleType):
    """A recording module: submodules import, any attribute is a reference or an opaque callable."""

    def __init__(self, name: str, package: Package, recorder: Recorder) -> None:
        super().__init__(name)
        self.__path__: List[str] = []  # a package: its submodules import too
        self.__file__ = f"<ascend-doctor stand-in for {name}>"
        if package.version and name in PACKAGES:
            self.__version__ = package.version
        self._package = package
        self._recorder = recorder

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = REFERENCE.get((self.__name__, attr))
        if value is None and not attr[:1].isupper():
            # a submodule or a function: a stand-in module is both (apex.parallel.convert_syncbn_model(m))
            try:
                value = importlib.import_module(f"{self.__name__}.{attr}")
            except ImportError:
                raise AttributeError(attr) from None
        else:
            value = _recording(
                value or _opaque_class(self.__name__, attr),
                self.__name__,
                attr,
                self._package,
                self._recorder,
            )
        setattr(self, attr, value)
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """An opaque function: returns its first tensor (or module) argument."""
        parent, _, name = self.__name__.rpartition(".")
        self._recorder.note(parent, name, self._package)
        return _first_tensor_or_module(*args, **kwargs)


def _opaque_class(module: str, attr: str) -> Any:
    """An nn.Module that returns its first tensor input."""
    return type(attr, (_Opaque,), {"__module__": module})


def _first_tensor_or_module(*args: Any, **kwargs: Any) -> Any:
    values = list(args) + list(kwargs.values())
    for kind in (torch.Tensor, torch.nn.Module):
        for a in values:
            if isinstance(a, kind):
                return a
    return None


class _Opaque(torch.nn.Module):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return _first_tensor_or_module(*args, **kwargs)


def _recording(value: Any, module: str, attr: str, package: Package, recorder: Recorder) -> Any:
    if isinstance(value, type):
        original_init: Callable[..., None] = value.__init__  # type: ignore[misc]

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            recorder.note(module, attr, package)
            original_init(self, *args, **kwargs)

        return type(value.__name__, (value,), {"__init__": __init__, "__module__": module})

    def call(*args: Any, **kwargs: Any) -> Any:
        recorder.note(module, attr, package)
        return value(*args, **kwargs)

    call.__name__ = attr
    return call


def _asked_by_user_code() -> bool:
    """Whether the import comes from the user's code rather than an installed library. Libraries probe
    their optional dependencies (torch._dynamo's ``import triton``, accelerate's and transformers'
    ``find_spec``) and must find a missing one absent, or they take the CUDA package's path."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name or name == __file__):
            return not installed(name)
        frame = frame.f_back
    return False


class StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on ``sys.meta_path``: only a module no other finder found, imported by the user's code (not by
    an installed library) or named in the user's config (``config_components.py``), gets a stand-in."""

    def __init__(self, recorder: Recorder, unknown: Sequence[str] = (), named: Sequence[str] = ()) -> None:
        self.recorder = recorder
        self.unknown = set(unknown)  # other missing modules to stand in for (--stand-in NAME)
        self.named = frozenset(named)  # dotted paths the user's config names, imported by a library

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        parent = sys.modules.get(fullname.rpartition(".")[0])
        if not isinstance(parent, StandInModule):  # an attribute of a stand-in given out is one too
            package = package_of(fullname) or (
                CUDA_EXTENSION if fullname.split(".")[0] in self.unknown else None
            )
            if package is None or not (_asked_by_user_code() or names_module(self.named, fullname)):
                return None
            if "." not in fullname:
                self.recorder.note(fullname, "import", package)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> Any:
        parent = sys.modules.get(spec.name.rpartition(".")[0])
        package = package_of(spec.name) or getattr(parent, "_package", None) or CUDA_EXTENSION
        return StandInModule(spec.name, package, self.recorder)

    def exec_module(self, module: Any) -> None:
        return None
