"""File helpers: atomic writes and the few formats every stage uses.

Every writer goes through :func:`atomic_path`: the data is written to a temporary name beside the target and
renamed only when complete, so a killed job never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success. The name holds
    the writer's host and process id, so that what a killed job leaves can be told from what a running one
    writes (:func:`remove_orphan_parts`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_HOST}-{os.getpid()}.", suffix=".part", dir=target.parent)
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


_HOST = socket.gethostname().split(".")[0].replace("-", "_") or "host"
_PART = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.part$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphan_parts(root) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` under ``root`` whose writer (on this host) is no
    longer running: a job killed while writing. Files of other hosts (a cluster's shared filesystem) and
    of running writers are left alone. Returns what was deleted."""
    removed = []
    for folder, _, files in os.walk(root):
        for name in files:
            m = _PART.match(name)
            if m and m["host"] == _HOST and not _alive(int(m["pid"])):
                path = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def write_folder(path, write: Callable[[Path], None]) -> None:
    """Fill a folder through ``write(tmp_folder)`` next to its final place and move it there whole (a
    Snakemake directory output, a saved model, must never be left half-written). Files get the usual
    permissions (safetensors writes 0600, unreadable for the rest of a group sharing a results folder)."""
    import shutil

    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    umask = os.umask(0)
    os.umask(umask)
    for f in tmp.rglob("*"):
        if f.is_file():
            f.chmod(0o666 & ~umask)
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
    data = path.read_bytes()
    try:
        return json.loads(decode_utf8(data, path, line=None, file_offset=0))
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON ({json_problem(e)})", line=e.lineno) from None


def json_problem(e: json.JSONDecodeError) -> str:
    """The decoder's message and column: "Unterminated string at column 12" (its own text can end in "starting
    at", which read "starting at at column 12" once the column was added)."""
    return f"{re.sub(r'(?: starting)? at$', '', e.msg)} at column {e.colno}"


# Real JSON-lines files hold one conversation per line (ReDial: a few KB, at most tens of KB); a line beyond
# this bound is not such a file (a single-line JSON dump, a binary file) and is refused before it fills memory.
MAX_LINE_BYTES = 10 * 1024 * 1024


def decode_utf8(raw: bytes, path, *, line: int | None, file_offset: int) -> str:
    """``raw`` as UTF-8; a bad byte raises :class:`InputError` naming the line and the byte offset (in the
    file, and in the line) instead of a bare UnicodeDecodeError."""
    from .errors import InputError

    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if line is None:  # a whole file: find the line of the bad byte
            line = raw.count(b"\n", 0, e.start) + 1
            in_line = e.start - (raw.rfind(b"\n", 0, e.start) + 1)
        else:
            in_line = e.start
        raise InputError(path, f"byte 0x{raw[e.start]:02x} at byte offset {file_offset + e.start} of the file "
                         f"(byte {in_line} of the line) is not valid UTF-8", line=line, expected="UTF-8 text",
                         hint="re-encode the file as UTF-8 (for example iconv -f latin1 -t utf-8), or fetch an "
                              "intact copy") from None


def iter_jsonl(path, *, expected: str, on_blank: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, parsed object) per non-blank line of a JSON-lines file; a malformed line
    raises :class:`InputError` naming the line and ``expected`` (what each line should hold)."""
    from .errors import InputError

    offset = 0
    with open(path, "rb") as f:
        for line_no in itertools.count(1):
            # Bounded read: a file without newlines must not be read whole into memory.
            raw = f.readline(MAX_LINE_BYTES + 2)  # the bound plus a line break ("\r\n")
            if not raw:
                return
            if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                raise InputError(path, f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MB "
                                 f"(ecrflow.io.MAX_LINE_BYTES, the bound per line)", line=line_no,
                                 expected=expected, hint="a JSON-lines file holds one object per line; "
                                 "check that this is the right file and that it has line breaks")
            text = decode_utf8(raw, path, line=line_no, file_offset=offset)
            offset += len(raw)
            if not text.strip():
                if on_blank is not None:
                    on_blank(line_no)
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(path, f"malformed JSON ({json_problem(e)}); expected {expected}",
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
