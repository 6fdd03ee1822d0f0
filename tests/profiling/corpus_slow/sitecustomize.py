"""A slow data loader on one rank under an unmodified public training script (test_profile_corpus_ddp_lora.py).

On the command's ``PYTHONPATH`` this is the user's own ``sitecustomize`` (``ascend-doctor`` runs it before starting
its tool). In the process whose ``RANK`` is ``$SLOW_RANK`` every batch a ``torch.utils.data.DataLoader`` yields comes
``$SLOW_MS`` ms late, as from slow storage (a sleep: the wait takes no CPU from the other rank), and a line is added to
the file ``slow-fired`` in the working directory (the test's check that the known answer exists). With ``$SLOW_AT``
only that batch of the rank's (counted from 0) is late: a read that stalls once. Without ``SLOW_RANK`` nothing is
changed.
"""

import os

if os.environ.get("SLOW_RANK") is not None and os.environ.get("RANK") == os.environ["SLOW_RANK"]:
    import time

    from torch.utils.data import dataloader

    DELAY = float(os.environ.get("SLOW_MS", "50")) / 1000
    AT = int(os.environ.get("SLOW_AT", "-1"))
    _next = dataloader._BaseDataLoaderIter.__next__
    _batches = [0]

    def _late_next(self):  # type: ignore[no-untyped-def]
        batch = _next(self)
        _batches[0] += 1
        if AT >= 0 and _batches[0] - 1 != AT:
            return batch
        time.sleep(DELAY)
        with open("slow-fired", "a") as f:
            f.write(f"rank {os.environ['RANK']}\n")
        return batch

    dataloader._BaseDataLoaderIter.__next__ = _late_next  # type: ignore[method-assign]
