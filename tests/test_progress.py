"""Progress reporting: in a log, a line per interval with step, fields, rate and ETA; a bar only on a terminal."""

from __future__ import annotations

import io
import logging

from ecrflow import progress as progress_mod
from ecrflow.progress import Progress, format_duration


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _logger():
    stream = io.StringIO()
    log = logging.getLogger("test.progress")
    log.handlers[:] = [logging.StreamHandler(stream)]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log, stream


def test_log_lines_per_interval_with_rate_and_eta(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    log, stream = _logger()
    p = Progress(100, desc="recommend", logger=log, interval=30, terminal=False)
    for step in range(1, 101):
        clock.t += 1.0  # one step a second
        p.update(1, epoch=step // 50, loss=1.0 / step)
    p.close()
    lines = stream.getvalue().splitlines()
    # the first step, then one line per 30 s (steps 31, 61, 91), then the end
    assert [line.split(",")[0] for line in lines] == ["recommend: step 1/100 (1 %)", "recommend: step 31/100 (31 %)",
                                                     "recommend: step 61/100 (61 %)", "recommend: step 91/100 (91 %)",
                                                     "recommend: step 100/100 (100 %)"]
    assert lines[2] == "recommend: step 61/100 (61 %), epoch 1, loss 0.01639, 1 step/s, elapsed 1:01, ETA 0:39"
    assert "ETA" not in lines[-1]  # done


def test_resumed_run_counts_its_rate_from_where_it_started(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    log, stream = _logger()
    p = Progress(400, desc="pretrain", logger=log, initial=300, interval=60, terminal=False)
    clock.t += 20.0
    p.update(10)  # 10 steps in 20 s after resuming at 300: 0.5 step/s, 90 left -> 3:00
    assert stream.getvalue().strip() == "pretrain: step 310/400 (78 %), 0.5 step/s, elapsed 0:20, ETA 3:00"


def test_a_terminal_gets_a_bar_and_the_log_no_lines(monkeypatch, capsys):
    log, stream = _logger()
    p = Progress(5, desc="critic", logger=log, terminal=True)
    for _ in range(5):
        p.update(1, loss=0.5)
    p.close()
    assert stream.getvalue() == "" and p.bar is not None
    assert "critic" in capsys.readouterr().err


def test_disabled_progress_shows_nothing(capsys):
    log, stream = _logger()
    p = Progress(5, desc="x", logger=log, enabled=False, terminal=True)
    p.update(5)
    p.close()
    assert p.bar is None and stream.getvalue() == "" and capsys.readouterr().err == ""


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00", "1:02:05"]
