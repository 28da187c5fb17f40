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
    """Set by the first Ctrl-C or SIGTERM; checked after each epoch by every running job."""

    requested = False
    reason = "Ctrl-C"  # what asked to stop: "Ctrl-C" (SIGINT) or the signal's name


_STOP_EVENT = None  # shared by the driver and its worker processes (``--jobs N``)


def on_signal(signum, frame) -> None:
    """First signal: ask every job to stop after its epoch. Second: stop at once."""
    if _Stop.requested:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
    _Stop.requested = True
    _Stop.reason = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    if mp.parent_process() is None:  # the driver speaks; workers just stop
        text = ("stopping after the current epoch (Ctrl-C again to stop now)"
                if signum == signal.SIGINT else f"{_Stop.reason}: stopping after the current "
                f"epoch ({_Stop.reason} again or Ctrl-C to stop now)")
        with contextlib.suppress(OSError, ValueError):  # nobody may read stderr any more
            print(f"\n{text}", file=sys.stderr, flush=True)


def stop_requested() -> bool:
    if _Stop.requested:
        return True
    return _STOP_EVENT is not None and _STOP_EVENT.is_set()


def stop_reason() -> str:
    """What asked the grid to stop, for the driver's last line: "Ctrl-C" or "SIGTERM"."""
    return _Stop.reason


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
    _Stop.reason = "Ctrl-C"
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
