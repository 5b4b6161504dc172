"""Ctrl-C at a step boundary: the first SIGINT during training sets a flag that the loop checks after each
completed optimiser step, so the saved training state is always that of a whole step (a SIGINT landing
mid-update would otherwise leave only the last checkpoint's state). A second Ctrl-C interrupts at once.

Only in a single process on the main thread: under torchrun every rank gets the signal at a different
point, and ranks stopping at different steps would hang in the next all-reduce, so there the default
handler (interrupt wherever it lands) stays."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StepBoundaryInterrupt:
    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        """Raise KeyboardInterrupt when a Ctrl-C arrived since the last check."""
        if self.requested:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self, enabled: bool = True) -> Iterator[StepBoundaryInterrupt]:
        usable = (
            enabled
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        if not usable:
            yield self
            return

        def handler(signum, frame):  # noqa: ARG001 (signal handler signature)
            if self.requested:  # the second Ctrl-C: now
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
