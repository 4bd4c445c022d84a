"""SIGTERM and SIGINT while training: stop at a step boundary with a checkpoint.

Schedulers (SLURM, Kubernetes, torchrun's agent) send SIGTERM some seconds before they kill a
job, and Ctrl-C sends SIGINT. The first such signal asks the loop to finish the step it is in,
save, and stop; a second one exits at once (status 128 + signal number), leaving at most a
temporary checkpoint directory that the next run removes. Under torchrun the ranks agree, after
every step, on whether any of them was signalled, so they all save the same step.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from genforge.train import dist as dist_mod

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A context in which SIGTERM/SIGINT set `received` instead of ending the process (only in the
    main thread, where Python delivers signals; elsewhere nothing changes)."""

    def __init__(self):
        self.received = 0  # the signal number of the first stop signal, 0 if none
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received:
            print(f"genforge: second {signal.Signals(signum).name}: exiting now, without saving", file=sys.stderr,
                  flush=True)
            os._exit(128 + signum)
        self.received = signum

    def agreed(self, dist: dist_mod.Dist) -> int:
        """The stop signal any rank received (the same on every rank; a collective under
        torchrun), 0 while none was; SIGTERM wins over SIGINT when ranks differ."""
        return dist_mod.agree(self.received, dist)


def exit_status(signum: int) -> int:
    """What the process exits with after stopping cleanly: 0 for SIGTERM, 130 for SIGINT."""
    return 130 if signum == signal.SIGINT else 0
