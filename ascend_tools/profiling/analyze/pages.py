"""Small memory pages for numpy's arrays while ``analyze`` runs.

numpy asks Linux for transparent huge pages (``madvise``) on every array of 4 MB or more. Where the kernel's
``transparent_hugepage/defrag`` is ``madvise`` (its default), the first touch of such an array compacts
memory on the spot whenever no free 2 MB page is at hand, which is the usual state of a host whose memory
the page cache fills: on this project's VM, filling 10 fresh arrays of 128 MB took 0.14–8.5 s of system
time with huge pages and 0.55–0.59 s without. ``analyze`` allocates gigabytes of columns and temporaries,
each touched once or twice, so it gains nothing from huge pages and loses the compaction (docs/analyze.md,
Scale). Forked reading workers inherit the setting; spawned ones run where there are no such pages."""

import contextlib
import importlib
from typing import Callable, Iterator, Optional


@contextlib.contextmanager
def small_pages() -> Iterator[None]:
    """numpy's huge-page advice off inside, as it was after; nothing where numpy has no such switch."""
    switch = _switch()
    if switch is None:
        yield
        return
    before = switch(False)
    try:
        yield
    finally:
        switch(before)


def _switch() -> Optional[Callable[[bool], bool]]:
    """numpy's ``_set_madvise_hugepage`` (1.20+: sets the advice, returns the previous one), or None."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2, numpy 1
        with contextlib.suppress(ImportError):
            return getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
    return None
