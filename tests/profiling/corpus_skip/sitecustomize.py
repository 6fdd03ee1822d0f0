"""A rank that skips one gradient clip, under an unmodified public training script (test_profile_corpus_fsdp2.py).

On the command's ``PYTHONPATH`` this is the user's own ``sitecustomize`` (``ascend-doctor`` runs it before starting
its tool). In the process whose ``RANK`` is ``$SKIP_RANK``, call number ``$SKIP_AT`` (from 0) of
``torch.nn.utils.clip_grad_norm_`` returns without clipping, as code that clips only where a rank-local condition
holds: under FSDP2 the norm is a DTensor all-reduce the other ranks enter and this one does not. A line is added
to the file ``skip-fired`` in the working directory (the test's check that the fault happened). Without
``SKIP_RANK`` nothing is changed.
"""

import os

if os.environ.get("SKIP_RANK") is not None and os.environ.get("RANK") == os.environ["SKIP_RANK"]:
    import torch
    import torch.nn.utils

    AT = int(os.environ.get("SKIP_AT", "0"))
    _clip = torch.nn.utils.clip_grad_norm_
    _calls = [0]

    def _skipping_clip(*args, **kwargs):  # type: ignore[no-untyped-def]
        call = _calls[0]
        _calls[0] += 1
        if call != AT:
            return _clip(*args, **kwargs)
        with open("skip-fired", "a") as f:
            f.write(f"rank {os.environ['RANK']} call {call}\n")
        return torch.tensor(0.0)

    torch.nn.utils.clip_grad_norm_ = _skipping_clip
