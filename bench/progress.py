"""A one-line progress bar over the whole grid, drawn only on a terminal.

It shows runs done, the current run's epoch and validation MAE, and an ETA from the mean
epoch time measured so far in this invocation. Off a terminal (CI logs, files) the bar stays
silent and only the one line per finished run that the driver prints remains.

``SafeStream`` wraps every stream a command writes to: when the reader goes away (``| head``,
a closed terminal) writing becomes a no-op instead of an error, so training and the writing
of tables go on.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from bench.plan import Job


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class SafeStream:
    """A text stream that survives its reader: a broken pipe, a closed or failing stream
    turns this and every later write into a no-op. Each write is flushed, so the failure
    shows here and not in the interpreter's last flush at exit; the stream's descriptor is
    then pointed at /dev/null, which keeps that last flush (and any code writing to the
    descriptor directly) quiet as well."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.broken = stream is None

    @classmethod
    def wrap(cls, stream) -> SafeStream:
        return stream if isinstance(stream, SafeStream) else cls(stream)

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # BrokenPipeError, closed file, full disk
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self._break()

    def isatty(self) -> bool:
        try:
            return not self.broken and self.stream.isatty()
        except (OSError, ValueError, AttributeError):
            return False

    def _break(self) -> None:
        self.broken = True
        try:
            fd = self.stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class Progress:
    def __init__(self, jobs: list[Job], done_epochs: dict[str, int], stream=None,
                 enabled: bool | None = None) -> None:
        self.stream = SafeStream.wrap(stream or sys.stderr)
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total_runs = len(jobs)
        self.runs_done = 0
        self.remaining = {j.key: max(j.epochs - done_epochs.get(j.key, 0), 0) for j in jobs}
        self.epochs_timed = 0
        self.seconds_timed = 0.0
        self.current: dict[str, dict] = {}
        self.start = time.perf_counter()

    def epoch(self, event: dict) -> None:
        """An epoch finished somewhere: ``{key, epoch, epochs, val_mae, seconds}``."""
        key = event["key"]
        self.current[key] = event
        if key in self.remaining:
            self.remaining[key] = max(event["epochs"] - event["epoch"], 0)
        self.epochs_timed += 1
        self.seconds_timed += event["seconds"]
        self.draw()

    def run_done(self, key: str) -> None:
        self.runs_done += 1
        self.remaining[key] = 0
        self.current.pop(key, None)
        self.draw()

    def eta(self) -> float | None:
        if not self.epochs_timed:
            return None
        per_epoch = self.seconds_timed / self.epochs_timed
        parallel = max(len(self.current), 1)
        return sum(self.remaining.values()) * per_epoch / parallel

    def line(self) -> str:
        parts = [f"[{self.runs_done}/{self.total_runs} runs]"]
        for ev in list(self.current.values())[-2:]:
            parts.append(f"{ev['key']} ep {ev['epoch']}/{ev['epochs']} val MAE {ev['val_mae']:.3f}")
        eta = self.eta()
        parts.append(f"{_fmt_duration(time.perf_counter() - self.start)} elapsed"
                     + (f", ETA {_fmt_duration(eta)}" if eta is not None else ""))
        return " | ".join(parts)

    def draw(self) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + self.line()[:width].ljust(width))
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line above the bar."""
        if self.enabled:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + " " * width + "\r")
        print(text, file=self.stream, flush=True)
        self.draw()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
