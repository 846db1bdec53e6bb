"""One rule for every LLM stage (emotion annotation, the judges, the LLM baselines): a failed request is
never a result.

:func:`ask_all` asks each item (an utterance, a judged context, a baseline context) until its answer parses,
up to ``max_attempts`` prompts per item (``make_request(i, attempt)``: the judge reshuffles, the others add
a reminder, so a deterministic backend does not simply repeat itself). Every answer is saved in the request
cache on arrival. When a request still fails after the backend's own retries, or the backend gives up on a
dead endpoint (:class:`EndpointDown`), the other items are still asked (cache filled as far as possible) and
then :class:`StageIncomplete` is raised with the counts and the remedy; the stage writes no output.
Snakemake removes a failed job's outputs anyway, so a plain rerun of the same command reruns the job, and
the cache makes it send exactly the requests that have no answer.

Unparseable answers are answers: they are cached (flagged) and count an attempt. On a later run the cached
chain is replayed, so an item that parsed at attempt 2 costs nothing; an item whose every attempt was
unparseable is asked again from attempt 1 (the server or model may have been fixed), up to
``max_attempts`` again.

Progress: one log line at the start, then one at most every ``PROGRESS_EVERY_S`` seconds and one at the end,
with done/total, the request rate, the ETA and the running failure and unparseable counts (a log file
gets lines, not a progress bar's carriage returns).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .base import Backend, EndpointDown, Request, Response

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30.0


class StageIncomplete(RuntimeError):
    """Requests of an LLM stage have no answer: the stage wrote nothing; rerun the same command."""


@dataclass
class Outcome:
    """One item's end state. ``status``: parsed, unparseable (every attempt answered, none parsed), failed
    (a request error) or pending (never asked: the endpoint went down first)."""

    status: str = "pending"
    value: Any = None  # what parse returned, for status parsed
    attempt: int = 0  # the attempt of the final answer
    text: str | None = None  # the final answer: the parsed one, or the last unparseable one
    error: str | None = None  # the request error, for status failed
    cached: bool = False  # the final answer came from the cache
    steps: dict[int, str] = field(default_factory=dict)  # attempt -> parsed | unparseable | failed
    unparseable_texts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "parsed"


@dataclass
class _Ask:
    item: int
    attempt: int
    request: Request
    key: str


class Progress:
    """Log lines for a long stage: done/total, rate, ETA, failures so far."""

    def __init__(self, stage: str, total: int, every: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.stage, self.total, self.clock = stage, total, clock
        self.every = PROGRESS_EVERY_S if every is None else every
        self.t0 = self.last = clock()
        self.done0 = 0

    def start(self, done: int, to_ask: int) -> None:
        self.done0 = done
        log.info("%s: %d items, %d answered from the cache, %d to ask", self.stage, self.total, done, to_ask)

    def update(self, done: int, sent: int, failed: int, unparseable: int, final: bool = False) -> None:
        now = self.clock()
        if not final and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-9)
        rate = (done - self.done0) / elapsed
        eta = "0s" if done >= self.total else (_duration((self.total - done) / rate) if rate > 0 else "unknown")
        log.info("%s: %d/%d done (%.1f %%), %d requests sent, %.2f items/s, ETA %s, %d failed, %d unparseable",
                 self.stage, done, self.total, 100.0 * done / max(self.total, 1), sent, rate, eta, failed,
                 unparseable)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def ask_all(backend: Backend, cache, n: int, make_request: Callable[[int, int], Request],
            parse: Callable[[int, int, str], Any], *, max_attempts: int, batch_size: int,
            stage: str) -> list[Outcome]:
    """Answer items ``0..n-1``; ``parse(i, attempt, text)`` returns the item's value or raises ValueError
    (ParseError is one). Returns one :class:`Outcome` per item, none of them failed or pending: those raise
    :class:`StageIncomplete` after every other item was asked."""
    if max_attempts < 1 or batch_size < 1:
        raise ValueError(f"need max_attempts >= 1 and batch_size >= 1, got {max_attempts} and {batch_size}")
    out = [Outcome() for _ in range(n)]
    fresh = [False] * n  # ask again ignoring the cache: every cached attempt of the item was unparseable
    counts = {"sent": 0, "answered": 0, "failed": 0, "unparseable": 0, "from_cache": 0}
    progress = Progress(stage, n)

    def settle(i: int, k: int, text: str, cached: bool) -> str:
        o = out[i]
        o.attempt, o.text, o.cached = k, text, cached
        try:
            o.value = parse(i, k, text)
        except ValueError:
            o.steps[k] = "unparseable"
            o.unparseable_texts.append(text)
            if not cached:
                counts["unparseable"] += 1
            if k >= max_attempts:
                o.status = "unparseable"
                return "exhausted"
            return "retry"
        o.steps[k], o.status = "parsed", "parsed"
        return "parsed"

    def advance(i: int, k: int) -> _Ask | None:
        """The next request of item ``i`` from attempt ``k`` on, replaying cached answers; None: settled."""
        while True:
            req = make_request(i, k)
            key = req.key(backend.model_id)
            entry = None if fresh[i] else cache.entry(key)
            if entry is None:
                return _Ask(i, k, req, key)
            if settle(i, k, entry.text, cached=True) != "retry":
                return None
            k += 1

    pending: list[_Ask] = []
    for i in range(n):
        a = advance(i, 1)
        if a is None and out[i].status == "unparseable":
            fresh[i] = True
            out[i] = Outcome()
            a = advance(i, 1)
        if a is None:
            counts["from_cache"] += 1
        else:
            pending.append(a)
    progress.start(counts["from_cache"], len(pending))

    def n_done() -> int:
        return sum(o.status != "pending" for o in out)

    down: EndpointDown | None = None
    try:
        while pending:
            groups: dict[str, list[_Ask]] = {}  # identical requests are sent once
            for a in pending:
                groups.setdefault(a.key, []).append(a)
            batches = list(groups.values())
            pending = []
            for start in range(0, len(batches), batch_size):
                batch = batches[start:start + batch_size]
                seen: set[int] = set()
                for j, resp in backend.iter_generate([g[0].request for g in batch]):
                    if j in seen or not 0 <= j < len(batch):
                        raise RuntimeError(f"{backend!r} answered request {j} of a batch of {len(batch)} twice or "
                                           f"out of range")
                    seen.add(j)
                    counts["sent"] += 1
                    pending.extend(_on_answer(batch[j], resp, cache, out, settle, advance, counts, stage))
                    progress.update(n_done(), counts["sent"], counts["failed"], counts["unparseable"])
                if len(seen) != len(batch):
                    raise RuntimeError(f"{backend!r} answered {len(seen)} of a batch of {len(batch)} requests")
    except EndpointDown as e:
        down = e
    progress.update(n_done(), counts["sent"], counts["failed"], counts["unparseable"], final=True)
    missing = [o for o in out if o.status in ("failed", "pending")]
    if down is not None or missing:
        raise StageIncomplete(_message(stage, backend, cache, out, counts, down))
    return out


def _on_answer(group: list[_Ask], resp: Response, cache, out, settle, advance, counts, stage) -> list[_Ask]:
    """Record one answer for every item that asked it; the follow-up requests of unparseable ones."""
    if not resp.ok:
        counts["failed"] += 1
        for a in group:
            o = out[a.item]
            o.status, o.error, o.attempt = "failed", resp.error, a.attempt
            o.steps[a.attempt] = "failed"
        log.warning("%s: a request failed: %s", stage, resp.error)
        return []
    counts["answered"] += 1
    results = [settle(a.item, a.attempt, resp.text, cached=False) for a in group]
    cache.put(group[0].key, resp, unparseable=results[0] != "parsed")
    return [nxt for a, r in zip(group, results) if r == "retry" and (nxt := advance(a.item, a.attempt + 1))]


def _message(stage, backend, cache, out, counts, down) -> str:
    failed = [o for o in out if o.status == "failed"]
    never = sum(o.status == "pending" for o in out)
    reask = sum(o.status == "unparseable" for o in out)
    why = f"{down}; " if down is not None else ""
    last = f" Last request error: {failed[-1].error}." if failed else ""
    again = f" (and the items whose answers never parsed, {reask}, are asked again)" if reask else ""
    return (f"{stage} ({backend.model_id}): {why}{len(failed) + never} of {len(out)} items have no answer "
            f"({len(failed)} failed after the backend's retries, {never} not asked or cut off by the stop). This run: "
            f"sent {counts['sent']}, answered {counts['answered']}, failed {counts['failed']}, unparseable "
            f"{counts['unparseable']}; {counts['from_cache']} items answered from the cache. Nothing was "
            f"written, so no failed request is scored or labelled.{last} Remedy: fix the endpoint if it is "
            f"down, then rerun the same snakemake command; answered requests are cached in {cache.dir} and "
            f"only the {len(failed) + never} missing ones are sent{again}.")
