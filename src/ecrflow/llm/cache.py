"""A disk cache of LLM answers, so that an interrupted annotation or judging run resumes where it stopped
and a rerun never pays for (or waits on) an answer twice.

Answers are appended to JSON-lines shards, one line per answer, flushed and fsynced as it is written: a
SIGKILL loses at most the line being written, and that partial last line is ignored on load. Each process
writes a shard of its own (``shard-00000.jsonl``, ``shard-00001.jsonl``, ...), so a shard is never appended
to after a crash; when a key has several lines, the last one loaded wins. Failed requests are never stored:
the next run sends them again. An answer the stage could not parse is stored with ``"unparseable": true``:
kept for the report, but never a cache hit of :meth:`RequestCache.get`, so a rerun asks it again
(``ecrflow.llm.stage`` replays it only to move on to the next attempt's prompt). Keys are content hashes
(:meth:`Request.key`) and answer texts are redacted by the backend before they arrive here, so nothing
secret is ever written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import InputError
from .base import Backend, Request, Response

log = logging.getLogger(__name__)

_SHARD = re.compile(r"^shard-(\d{5,})\.jsonl$")


class Entry(NamedTuple):
    text: str
    unparseable: bool


class RequestCache:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, Entry] = {}
        self._file = None
        self._lock = threading.Lock()
        self.path: Path | None = None  # this process's shard, created on the first put
        for path in self._shards():
            self._load(path)

    def _shards(self) -> list[Path]:
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _SHARD.match(p.name))]
        return [p for _, p in sorted(found)]

    def _load(self, path: Path) -> None:
        raw = path.read_text(encoding="utf-8", errors="replace")
        lines = raw.split("\n")
        if lines[-1]:
            log.warning("%s: ignoring a partial last line (a run was killed while writing it)", path)
        for line_no, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"malformed JSON ({e.msg}); expected a cached answer "
                                       '{"key", "text", "error"}', line=line_no) from None
            if not (isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("text"), str)
                    and isinstance(rec.get("unparseable", False), bool)):
                raise InputError(path, 'expected a cached answer {"key": str, "text": str, "error": null, '
                                       '"unparseable": bool (optional)}', line=line_no)
            if rec.get("error") is None:
                self._entries[rec["key"]] = Entry(rec["text"], rec.get("unparseable", False))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> Response | None:
        """The cached answer, when it is one the stage could use; an unparseable one is no hit."""
        entry = self._entries.get(key)
        return None if entry is None or entry.unparseable else Response(entry.text, None, cached=True)

    def entry(self, key: str) -> Entry | None:
        """The cached answer with its parse flag, unparseable ones included (for the report and replay)."""
        return self._entries.get(key)

    def put(self, key: str, response: Response, *, unparseable: bool = False) -> bool:
        """Store an answer (durably, before returning); failures are not stored. ``unparseable`` marks an
        answer the stage could not read: kept, but asked again by the next run. True if written."""
        if response.error is not None or response.text is None:
            return False
        entry = Entry(response.text, bool(unparseable))
        with self._lock:
            if self._entries.get(key) == entry:
                return False
            rec = {"key": key, "text": entry.text, "error": None}
            if entry.unparseable:
                rec["unparseable"] = True
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            f = self._open()
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            self._entries[key] = entry
        return True

    def _open(self):
        if self._file is None:
            shards = self._shards()
            n = int(_SHARD.match(shards[-1].name).group(1)) + 1 if shards else 0
            while True:  # O_EXCL: two processes starting at once take different shards
                path = self.dir / f"shard-{n:05d}.jsonl"
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o666)
                    break
                except FileExistsError:
                    n += 1
            self._file = os.fdopen(fd, "a", encoding="utf-8")
            self.path = path
            _fsync_dir(self.dir)
        return self._file

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    """Make the new shard's directory entry durable too (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def run_cached(backend: Backend, requests: list[Request], cache: RequestCache, batch_size: int,
               on_progress: Callable[[int, int], None] | None = None) -> list[Response]:
    """Answer ``requests`` in order: disk hits come from ``cache`` (``cached=True``), the rest go to the
    backend ``batch_size`` at a time, each answer saved as soon as it arrives. Identical requests are sent
    once. ``on_progress(done, total)`` is called after each new answer. An interruption (Ctrl-C, a crash)
    loses only the answers in flight: the next run resumes from the cache."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = len(requests)
    out: list[Response | None] = [None] * total
    todo: dict[str, list[int]] = {}
    for i, req in enumerate(requests):
        key = req.key(backend.model_id)
        hit = cache.get(key)
        if hit is not None:
            out[i] = hit
        else:
            todo.setdefault(key, []).append(i)
    n_cached = total - sum(len(v) for v in todo.values())
    log.info("%s: %d requests, %d cached, %d to send (%d distinct)", backend.model_id, total, n_cached,
             total - n_cached, len(todo))
    pending = list(todo.items())
    done, n_new, n_failed = n_cached, 0, 0
    for start in range(0, len(pending), batch_size):
        batch = pending[start:start + batch_size]
        seen = set()
        for j, resp in backend.iter_generate([requests[idx[0]] for _, idx in batch]):
            if j in seen or not 0 <= j < len(batch):
                raise RuntimeError(f"{backend!r} answered request {j} of a batch of {len(batch)} twice or "
                                   f"out of range")
            seen.add(j)
            key, idxs = batch[j]
            cache.put(key, resp)
            n_new += 1
            if resp.error is not None:
                n_failed += 1
                log.warning("%s: request %d failed: %s", backend.model_id, idxs[0], resp.error)
            for i in idxs:
                out[i] = Response(resp.text, resp.error, cached=False)
            done += len(idxs)
            if on_progress is not None:
                on_progress(done, total)
        if len(seen) != len(batch):
            raise RuntimeError(f"{backend!r} answered {len(seen)} of a batch of {len(batch)} requests")
    log.info("%s: %d answers: %d cached, %d new, %d failed", backend.model_id, total, n_cached, n_new - n_failed,
             n_failed)
    return out  # type: ignore[return-value]
