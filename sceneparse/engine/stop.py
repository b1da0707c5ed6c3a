"""SIGTERM / SIGINT during training: finish the current step, save a checkpoint, exit cleanly.

The handler only raises a flag; the loop checks it after each step (summed over processes, so
every rank stops at the same iteration even when only one received the signal). A second signal
while the first is being handled falls back to the default behaviour, so a stuck run can still be
killed.
"""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """Context manager that turns SIGTERM/SIGINT into `requested = True` (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            log.warning("second %s: stopping without waiting for the checkpoint", name)
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.requested, self.signal_name = True, name
        log.warning("%s received: the run saves a checkpoint after this step and stops", name)

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()
