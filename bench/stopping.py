"""Stopping a grid gracefully: Ctrl-C or SIGTERM once saves and stops, twice stops now.

The first signal only sets a flag; every running job polls ``stop_requested()`` after each
epoch's state is on disk, then returns ``interrupted``. Worker processes (``--jobs N``)
share the flag through a multiprocessing event the executor installs with
``set_stop_event``, because a SIGTERM sent to the driver alone never reaches them.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import sys


class _Stop:
    """Set by the first Ctrl-C; checked after each epoch by every running job."""

    requested = False


_STOP_EVENT = None  # shared by the driver and its worker processes (``--jobs N``)


def on_signal(signum, frame) -> None:
    """First signal: ask every job to stop after its epoch. Second: stop at once."""
    if _Stop.requested:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
    _Stop.requested = True
    if mp.parent_process() is None:  # the driver speaks; workers just stop
        print("\nstopping after the current epoch (Ctrl-C again to stop now)", file=sys.stderr,
              flush=True)


def stop_requested() -> bool:
    if _Stop.requested:
        return True
    return _STOP_EVENT is not None and _STOP_EVENT.is_set()


def signal_seen() -> bool:
    """Whether this process itself received the stop signal."""
    return _Stop.requested


def set_stop_event(event) -> None:
    global _STOP_EVENT
    _STOP_EVENT = event


@contextlib.contextmanager
def graceful_stop():
    """Install the handlers for SIGINT and SIGTERM (pre-emption: save and stop)."""
    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    _Stop.requested = False
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
