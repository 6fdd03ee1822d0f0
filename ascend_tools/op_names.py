"""Op names as text: what a user names an op (``--ops matmul``), an overload's base name, the ops whose output is
uninitialised memory. No torch here: compare's report reads them without importing it (``dispatch.py`` has what
needs torch)."""

from typing import List, Optional

# names a user may give for an op that never reaches dispatch (CompositeImplicitAutograd) -> what does
OP_ALIASES = {
    "matmul": ("mm", "bmm", "addmm", "baddbmm"),
    "linear": ("addmm", "mm", "bmm"),
    "softmax": ("_softmax",),
    "log_softmax": ("_log_softmax",),
    "layer_norm": ("native_layer_norm",),
}


def normalise_op(name: str) -> List[str]:
    """``aten::mm``, ``aten.mm.default``, ``mm`` → ``["mm"]``; ``matmul`` → the ops it runs as."""
    n = name.strip()
    for prefix in ("aten::", "aten."):
        if n.startswith(prefix):
            n = n[len(prefix) :]
    if n.endswith(".default"):
        n = n[: -len(".default")]
    return list(OP_ALIASES.get(n, (n,)))


def op_base(name: str) -> str:
    """``aten::add.Tensor`` → ``add``: the op without namespace and overload."""
    return name.split("::", 1)[-1].split(".", 1)[0]


def is_wanted(name: str, wanted: Optional[set]) -> bool:
    """Whether ``name`` (``aten::add.Tensor``) passes an ``--ops`` filter (names from :func:`normalise_op`;
    None: every op)."""
    rest = name.split("::", 1)[-1]
    return wanted is None or rest in wanted or rest.split(".", 1)[0] in wanted


#: ops that allocate or re-point storage without defining its values (their outputs hold whatever the
#: memory held: statistics of them are noise, NaN included)
UNDEFINED_VALUES = frozenset((
    "empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted",
    "resize_", "resize_as_", "set_",
))  # fmt: skip

#: namespaces of collectives: an op returns before the communication it starts has written its tensors (gloo's
#: threads, NCCL's and HCCL's streams; ``Work.wait()`` or ``wait_tensor`` ends it), so their values are not known
#: when it returns
COLLECTIVE_NAMESPACES = ("c10d::", "_c10d_functional::")


def is_collective(name: str) -> bool:
    """Whether op ``name`` starts a communication that writes its tensors after it returns (``wait_tensor``
    returns once they are written). Their schemas do not say which they write (``c10d::allreduce_(Tensor[]
    tensors, ...)`` has no alias annotation): every tensor of the call may be."""
    return name.startswith(COLLECTIVE_NAMESPACES) and op_base(name) != "wait_tensor"


#: ops whose output is a view of their first input (its elements, or a subset of them, in another shape)
ALIAS_VIEWS = frozenset((
    "view", "_unsafe_view", "alias", "detach", "expand", "t", "transpose", "reshape", "slice", "select",
    "unsqueeze", "squeeze", "as_strided",
))  # fmt: skip

#: in-place ops that fill their first argument with random numbers (two runs differ there when their seeds do)
RANDOM_FILLS = frozenset((
    "normal_", "uniform_", "random_", "exponential_", "geometric_", "log_normal_", "cauchy_", "bernoulli_",
))  # fmt: skip

#: ops whose output is drawn from the random number generator (torch's ``Tag.nondeterministic_seeded`` generators
#: and dropouts, without the attention and RNN kernels the tag also marks for their dropout argument; torch_npu's
#: dropout ops from its op table): two runs with the same inputs and arguments differ there only when their
#: generators are in different states
RANDOM_OPS = RANDOM_FILLS | frozenset((
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal", "uniform",
    "bernoulli", "cauchy", "exponential", "geometric", "log_normal", "multinomial", "poisson", "_standard_gamma",
    "dropout", "native_dropout", "alpha_dropout", "_fused_dropout", "rrelu_with_noise", "rrelu_with_noise_",
    "rrelu_with_noise_functional", "npu_dropout", "npu_dropout_gen_mask", "npu_dropout_with_add_softmax",
))  # fmt: skip

#: in-place ops that overwrite every element of their first argument without reading it: what it held before
#: (often uninitialised memory: ``copy.deepcopy`` of a tensor copies into a fresh storage) is no input of theirs
OVERWRITES_SELF = frozenset(("copy_", "fill_", "zero_")) | RANDOM_FILLS
