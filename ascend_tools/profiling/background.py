"""The profiler's background threads (hang watchdog, memory sampler): a daemon thread running ``_run`` until
``stop()``, which sets ``_stop`` (the loop waits on it between rounds) and joins."""

import threading
from typing import Optional


class Background:
    thread_name = "ascend-doctor"

    def _init_background(self) -> None:
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and join the thread (work in progress, e.g. a hang dump, finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
