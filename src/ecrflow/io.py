"""File helpers: atomic writes and the few formats every stage uses.

Every writer goes through :func:`atomic_path`: the data is written to a temporary name beside the target and
renamed only when complete, so a killed job never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_folder(path, write: Callable[[Path], None]) -> None:
    """Fill a folder through ``write(tmp_folder)`` next to its final place and move it there whole (a
    Snakemake directory output, a saved model, must never be left half-written)."""
    import shutil

    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def write_json(path, obj: Any, indent: int | None = 1) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, ensure_ascii=False, sort_keys=False)
            f.write("\n")


def write_jsonl(path, rows) -> None:
    """One JSON object per line (generated text, judged samples, logs)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(path, rows: list[dict]) -> None:
    """A table: the columns are every key in order of first appearance (rows may lack some, left empty);
    floats with four decimals."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def read_json(path) -> Any:
    from .errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON ({e.msg}, column {e.colno})", line=e.lineno) from None


def iter_jsonl(path, *, expected: str, on_blank: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, parsed object) per non-blank line of a JSON-lines file; a malformed line
    raises :class:`InputError` naming the line and ``expected`` (what each line should hold)."""
    from .errors import InputError

    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                if on_blank is not None:
                    on_blank(line_no)
                continue
            try:
                yield line_no, json.loads(raw)
            except json.JSONDecodeError as e:
                raise InputError(path, f"malformed JSON ({e.msg} at column {e.colno}); expected {expected}",
                                 line=line_no) from None


def write_parquet(path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def data_fingerprint(paths) -> str:
    """One short hash over the content hashes of the given files (with their names), for provenance."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{Path(p).name}:{sha256_file(p)}\n".encode())
    return h.hexdigest()[:16]
