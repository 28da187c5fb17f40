"""The local executor: jobs one after another in this process, or ``--jobs N`` at once in
worker processes that divide the CPU threads among them.

Every unit of work (one job, or a fused group) goes to ``bench.job.execute_jobs``, as it
does on Ray, so results, skip-and-resume and locking behave the same everywhere. Worker
processes are spawned (forking after torch has started threads can deadlock) and die with
the driver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch

from bench.job import JobOutcome, execute_jobs
from bench.plan import Job
from bench.profile import Profile
from bench.stopping import on_signal, set_stop_event, signal_seen, stop_requested
from bench.store import StoreError
from schedules import NamedSchedule


def run_local(work: list[list[Job]], items: dict[str, NamedSchedule], profile: Profile,
              exp_dir, on_epoch, finished) -> None:
    """Execute every unit; ``finished(outcome)`` is called for each job as it ends."""
    if profile.jobs <= 1:
        for unit in work:
            if stop_requested():
                break
            for outcome in execute_jobs(unit, items, profile, str(exp_dir), on_epoch,
                                        stop_requested):
                finished(outcome)
    else:
        _run_pool(work, items, profile, exp_dir, profile.jobs, on_epoch, finished)


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the driver dies, so no orphan trains on alone."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        parent = os.getppid()

        def watch():
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


_EVENTS = None  # the worker's end of the progress queue, set by _init_worker


def _init_worker(threads: int, events, stop_event) -> None:
    global _EVENTS
    _EVENTS = events
    set_stop_event(stop_event)
    _die_with_parent()
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def _worker(unit: list[Job], items: dict[str, NamedSchedule], profile: Profile, exp_dir: str):
    return execute_jobs(unit, items, profile, exp_dir, _EVENTS.put, stop_requested)


def _run_pool(work, items, profile, exp_dir, jobs, on_epoch, finished) -> None:
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    events = ctx.Queue()
    # A signal handler only sets a flag; the loop below passes it on to the workers, which
    # may not have received the signal themselves (SIGTERM sent to the driver alone).
    stop_event = ctx.Event()
    set_stop_event(stop_event)
    pump_stop = threading.Event()

    def pump():
        while not pump_stop.is_set():
            try:
                event = events.get(timeout=0.2)
            except Exception:
                continue
            on_epoch(event)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(profile.threads_per_run(), events,
                                           stop_event)) as pool:
            pending = {}
            waiting = list(work)
            while waiting or pending:
                while waiting and len(pending) < jobs and not stop_requested():
                    unit = waiting.pop(0)
                    pending[pool.submit(_worker, unit, items, profile, str(exp_dir))] = unit
                if not pending:
                    break
                if signal_seen() and not stop_event.is_set():
                    stop_event.set()
                done, _ = wait(pending, return_when=FIRST_COMPLETED, timeout=0.5)
                for fut in done:
                    unit = pending.pop(fut)
                    try:
                        outcomes = fut.result()
                    except StoreError:
                        # The disk is full or unwritable for everyone: stop the others after
                        # their epoch instead of letting them finish whole runs first.
                        stop_event.set()
                        for other in pending:
                            other.cancel()
                        raise
                    except Exception as exc:  # a worker process died
                        outcomes = [JobOutcome(job.key, "failed", 0,
                                                      f"worker process died: {exc}")
                                    for job in unit]
                    for outcome in outcomes:
                        finished(outcome)
    finally:
        pump_stop.set()
        pumper.join()
        set_stop_event(None)
