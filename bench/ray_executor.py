"""``--executor ray``: each job of the grid becomes a Ray task.

A task calls the same ``bench.job.execute_jobs`` as the local executor, so skip-and-resume,
per-run locks and atomic files behave identically. Workers write their run folders
directly into the experiment folder, which must therefore be on a filesystem every node
mounts at the same path (the usual shared home or scratch of a Slurm cluster); the driver
only reads run folders back to rebuild ``epochs.csv`` and ``summary.csv``, so it never
writes a half-finished record.

Ctrl-C once: a stop file in the experiment folder tells every task to save after its
current epoch and return; twice: the driver exits and Ray ends the tasks, whose last epochs
are on disk. A task whose worker dies (killed, out of memory, node lost) is retried by Ray
(``max_retries``); the retry takes the run's lock, which the dead holder no longer has,
and resumes from the last checkpoint written, ending with the records an uninterrupted run
would have had. With no ``--address`` a local Ray instance is started, sized to this
machine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bench.config import ConfigError
from bench.job import JobOutcome, execute_jobs
from bench.store import StoreError

TASK_RETRIES = 3
# Graceful stop reaches tasks on any node through the shared experiment folder: each task
# looks for this file after every epoch, saves and returns.
STOP_FILE = ".stop"


def _task(unit, items, profile, exp_dir, threads, queue):
    import torch

    torch.set_num_threads(threads)
    stop_file = Path(exp_dir) / STOP_FILE

    def should_stop() -> bool:
        return stop_file.exists()

    if should_stop():  # queued before the stop: start nothing
        return [JobOutcome(job.key, "interrupted", 0, "not started") for job in unit]

    def progress(event):
        # Progress is best effort: a full or vanished queue must not stop the work.
        with contextlib.suppress(Exception):
            queue.put_nowait(event)

    return execute_jobs(unit, items, profile, exp_dir, progress, should_stop)


def run_on_ray(work, items, profile, exp_dir, address, on_epoch, finished, stop_requested,
               poll_seconds: float = 0.2) -> None:
    """Submit every unit of work (one job, or a fused group), then report epochs and finished
    jobs as they arrive."""
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'stbench[ray]'") from None

    threads = profile.threads_per_run()
    gpus = 1 if profile.device.startswith("cuda") else 0
    started_here = not ray.is_initialized()
    if started_here:
        # Workers import the project from the driver's working tree.
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {"env_vars": {"PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}}
        ray.init(address=address, runtime_env=env, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    stop_file = Path(exp_dir) / STOP_FILE
    stop_file.unlink(missing_ok=True)
    try:
        queue = Queue(maxsize=10_000)
        task = ray.remote(_task).options(num_cpus=threads, num_gpus=gpus,
                                         max_retries=TASK_RETRIES, retry_exceptions=False)
        pending = {task.remote(unit, items, profile, str(exp_dir), threads, queue): unit
                   for unit in work}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_seconds)
            while not queue.empty():
                on_epoch(queue.get_nowait())
            for ref in ready:
                unit = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(getattr(exc, "cause", None), StoreError):
                        raise StoreError(str(exc.cause)) from None
                    outcomes = [JobOutcome(job.key, "failed", 0,
                                                  f"task raised {type(exc).__name__}")
                                for job in unit]
                except ray.exceptions.RayError as exc:
                    outcomes = [JobOutcome(job.key, "failed", 0,
                                                  f"Ray task failed after {TASK_RETRIES} "
                                                  f"retries: {type(exc).__name__}")
                                for job in unit]
                for outcome in outcomes:
                    finished(outcome)
            if stop_requested() and not stop_file.exists():
                stop_file.touch()  # running tasks finish their epoch; queued ones return
    finally:
        stop_file.unlink(missing_ok=True)
        if started_here:
            ray.shutdown()
