"""Progress of a long loop, readable where it lands: a bar on a terminal, a line per interval in a log.

A redrawn bar in a file (a SLURM job's log, a rule's log, CI output) is thousands of carriage-return frames;
a log needs one line every so often with the step, the loss, the rate and the time left. Both come from one
object, so a training loop reports once per step and the output decides how it is shown.
"""

from __future__ import annotations

import logging
import os
import sys
import time

INTERVAL_ENV = "ECRFLOW_PROGRESS_SECONDS"  # seconds between log lines (default 60)


def _interval() -> float:
    try:
        return float(os.environ.get(INTERVAL_ENV, "60"))
    except ValueError:
        return 60.0


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``update(n, **fields)`` after each unit of work; ``close()`` at the end (also a context manager).

    On a terminal (stderr is a TTY) a tqdm bar, its fields refreshed with the bar rather than forcing a
    redraw per step. Everywhere else, through ``logger``: a line when the first unit is done, then at most
    one per ``interval`` seconds, and one at the end: ``task: step 120/400 (30 %), loss 2.31, 1.9 step/s,
    elapsed 1:03, ETA 2:27``. ``enabled=False`` (a process other than the main one) shows nothing.
    """

    def __init__(self, total: int, *, desc: str, unit: str = "step", initial: int = 0,
                 logger: logging.Logger | None = None, enabled: bool = True, interval: float | None = None,
                 terminal: bool | None = None):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.enabled = enabled
        self.log = logger or logging.getLogger("ecrflow.progress")
        self.interval = _interval() if interval is None else interval
        self.start_n, self.t0 = initial, time.monotonic()
        self.last_line, self.logged_n = None, None  # time and count of the last log line
        self.fields: dict[str, object] = {}
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = None
        if enabled and terminal:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, mininterval=5, dynamic_ncols=True)

    def update(self, n: int = 1, **fields) -> None:
        if not self.enabled:
            return
        self.n += n
        self.fields.update(fields)
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)  # drawn with the next bar refresh, not now
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.last_line is None or now - self.last_line >= self.interval:
            self.log.info(self.line(now))
            self.last_line, self.logged_n = now, self.n

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.t0
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.unit} {self.n}/{self.total}"
                 + (f" ({100 * self.n / self.total:.0f} %)" if self.total else "")]
        for key, value in self.fields.items():
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        parts.append(f"{rate:.3g} {self.unit}/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if rate > 0 and self.total and self.n < self.total:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        return ", ".join(parts)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        elif self.logged_n is not None and self.n != self.logged_n:
            self.log.info(self.line())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
