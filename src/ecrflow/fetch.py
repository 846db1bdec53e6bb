"""Getting the raw data: download what the config names (``fetch.data``), verify it, unpack it.

Every file is checked against a size and a sha256: the config's where given, otherwise the lock file's
(``fetch.lock``, committed beside the configs), where the first download records them. A file already on disk
is verified, not downloaded again; a mismatch fails naming the file, the expected and the found checksum, and
a download that fails or is cut off leaves nothing behind but its message.

Downloads: ``https://`` and ``http://`` through requests (streamed, hashed on the way); Google Drive files
(``gdrive:<file id>``, such as the ECR release) through gdown, which handles Drive's confirmation page for
large files. Archives (zip, tar, tar.gz) are unpacked into ``unpack_to``; a single top-level folder inside
the archive is dropped, so ``emo_data/train_data_dbpedia_emo.jsonl`` lands in ``unpack_to`` itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)
CHUNK = 1 << 20
UNPACKED_MARK = ".ecrflow-unpacked.json"  # in unpack_to: which archive (name, sha256) was unpacked there


class FetchError(InputError):
    """A download failed, was cut off, or does not match its recorded size or checksum."""


@dataclass(frozen=True)
class Source:
    """One entry of ``fetch.data``."""

    name: str
    url: str
    file: str
    unpack_to: str | None = None
    sha256: str | None = None
    size: int | None = None
    source: str = ""
    licence: str = ""

    @classmethod
    def from_config(cls, entry: dict) -> "Source":
        keys = {k: entry.get(k) for k in ("unpack_to", "sha256", "size")}
        return cls(entry["name"], entry["url"], entry["file"], **keys, source=entry.get("source") or "",
                   licence=entry.get("licence") or "")


# -- the lock file -------------------------------------------------------------------------------------------
def read_lock(path) -> dict:
    path = Path(path)
    if not path.exists():
        return {"data": {}, "models": {}}
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON: {e.msg}", line=e.lineno,
                         hint="restore it from version control, or delete it to record the checksums again") from None
    lock.setdefault("data", {})
    lock.setdefault("models", {})
    return lock


def write_lock(path, lock: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def update_lock(path, change) -> None:
    """Read, ``change(lock)`` in place and write the lock under a file lock: parallel fetch jobs (one per
    hub model) record their entries without losing each other's."""
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):
        lock = read_lock(path)
        before = json.dumps(lock, sort_keys=True)
        change(lock)
        if json.dumps(lock, sort_keys=True) != before:
            write_lock(path, lock)


def expected_checksum(src: Source, lock: dict, lock_path) -> tuple[str | None, int | None, str]:
    """(sha256, size, where they come from): the config's, else the lock's; both present must agree."""
    locked = lock["data"].get(src.name)
    if locked and locked.get("url") != src.url:
        raise FetchError(lock_path, f"{src.name}: the lock records {locked.get('url')!r}, the config names "
                         f"{src.url!r}", hint=f"delete the entry {src.name!r} from the lock file to record the "
                                              f"new file's checksum on its next download")
    if src.sha256:
        if locked and locked["sha256"] != src.sha256:
            raise FetchError(lock_path, f"{src.name}: the config's sha256 {src.sha256} differs from the lock's "
                             f"{locked['sha256']}", hint="keep one: fix the config or delete the lock entry")
        return src.sha256, src.size, "config"
    if locked:
        return locked["sha256"], locked.get("size"), "lock"
    return None, None, "none"


# -- download and verification --------------------------------------------------------------------------------
def file_digest(path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def verify(path, sha256: str | None, size: int | None, where: str) -> tuple[str, int]:
    """The file's (sha256, size), after checking them against the expected ones (``where``: config or lock)."""
    found, n = file_digest(path)
    if size is not None and n != size:
        raise FetchError(path, f"size {n} bytes, expected {size} (from the {where}); sha256 found {found}",
                         hint="a truncated or different file: delete it and fetch again")
    if sha256 and found != sha256:
        raise FetchError(path, f"sha256 mismatch: expected {sha256} (from the {where}), found {found}",
                         hint="the file differs from the one recorded: delete it and fetch again; if the "
                              "source changed on purpose, update the checksum")
    return found, n


def _download_http(url: str, dest: Path, timeout: float) -> None:
    import requests

    announced, got = None, 0
    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            announced = r.headers.get("Content-Length")
            with open(dest, "wb") as f:
                for chunk in r.iter_content(CHUNK):
                    f.write(chunk)
                    got += len(chunk)
    except requests.exceptions.HTTPError as e:
        raise FetchError(url, f"download failed: HTTP {e.response.status_code} {e.response.reason}") from None
    except requests.exceptions.RequestException as e:
        done = dest.stat().st_size if dest.exists() else 0
        total = f" of {announced}" if announced else ""
        raise FetchError(url, f"download interrupted after {done}{total} bytes ({type(e).__name__})",
                         hint="nothing was kept; run the fetch again") from None
    if announced is not None and got != int(announced):
        raise FetchError(url, f"download interrupted after {got} of {announced} bytes",
                         hint="nothing was kept; run the fetch again")


def _download_gdrive(file_id: str, dest: Path) -> None:
    import gdown

    try:
        out = gdown.download(id=file_id, output=str(dest), quiet=True)
    except Exception as e:  # gdown raises its own types and requests'; the message is what matters here
        raise FetchError(f"gdrive:{file_id}", f"Google Drive download failed: {e}",
                         hint="check the id and that the file is shared publicly; run the fetch again") from None
    if out is None or not dest.exists():
        raise FetchError(f"gdrive:{file_id}", "Google Drive download failed (no file returned)",
                         hint="Drive limits downloads of popular files; retry later, or download it in a "
                              "browser and put it where the message of the next fetch says")


def download(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` through a ``.part`` file that is renamed only when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        if url.startswith("gdrive:"):
            _download_gdrive(url.removeprefix("gdrive:"), part)
        elif url.startswith(("http://", "https://")):
            _download_http(url, part, timeout)
        else:
            raise FetchError(url, "unsupported URL", expected="http(s)://... or gdrive:<file id>")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


# -- unpacking -------------------------------------------------------------------------------------------------
def unpack(archive: Path, dest: Path) -> list[str]:
    """Unpack ``archive`` into ``dest`` (through a temporary folder beside it), dropping a single top-level
    folder; returns the files placed. A plain file (not an archive) is copied into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    is_zip = zipfile.is_zipfile(archive)
    if not is_zip and not tarfile.is_tarfile(archive):  # both read the header only
        shutil.copy2(archive, dest / archive.name)
        return [archive.name]
    with tempfile.TemporaryDirectory(dir=dest, prefix=".unpack-") as tmp:
        if is_zip:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        root = Path(tmp)
        top = [p for p in root.iterdir() if not p.name.startswith("__MACOSX")]
        if len(top) == 1 and top[0].is_dir():
            root = top[0]
        placed = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__MACOSX" not in path.parts:
                rel = path.relative_to(root)
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest / rel)
                placed.append(str(rel))
    return placed


# -- one source, all sources -------------------------------------------------------------------------------------
def fetch_source(src: Source, downloads, lock: dict, lock_path, timeout: float = 60.0) -> dict:
    """Make ``src`` present and verified (and unpacked); returns its record for the lock and the report."""
    sha, size, where = expected_checksum(src, lock, lock_path)
    path = Path(downloads) / src.file
    if path.exists():
        found, n = verify(path, sha, size, where)
        action = "verified"
    else:
        log.info("%s: downloading %s", src.name, src.url)
        download(src.url, path, timeout)
        try:
            found, n = verify(path, sha, size, where)
        except FetchError:
            path.unlink()  # a wrong download is not kept, so the next fetch downloads again
            raise
        action = "downloaded"
    if where == "none":
        log.warning("%s: no checksum in the config or the lock: recorded sha256 %s (%d bytes) in %s; commit "
                    "it so that every later fetch is checked against it", src.name, found, n, lock_path)
    record = {"url": src.url, "file": src.file, "sha256": found, "size": n}
    if src.unpack_to:
        mark = Path(src.unpack_to) / UNPACKED_MARK
        done = json.loads(mark.read_text()) if mark.exists() else {}
        if done.get(src.name) != found:
            placed = unpack(path, Path(src.unpack_to))
            done[src.name] = found
            mark.write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
            log.info("%s: unpacked %d file(s) into %s", src.name, len(placed), src.unpack_to)
    log.info("%s: %s, sha256 %s (%d bytes, checked against the %s)", src.name, action, found, n,
             where if where != "none" else "lock, newly recorded")
    return record


def fetch_all(entries: list[dict], downloads, lock_path, timeout: float = 60.0) -> dict:
    """Fetch every ``fetch.data`` entry, recording new checksums in the lock. Every source is tried; the
    failures are raised together at the end, each naming its file."""
    lock = read_lock(lock_path)
    records, failures = {}, []
    for entry in entries:
        src = Source.from_config(entry)
        try:
            record = fetch_source(src, downloads, lock, lock_path, timeout)
        except FetchError as e:
            failures.append(e)
            continue
        records[src.name] = record

        def keep(current: dict, name=src.name, record=record) -> None:
            current["data"][name] = record

        update_lock(lock_path, keep)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise FetchError(lock_path, f"{len(failures)} downloads failed:\n" + "\n".join(f"  {e}" for e in failures))
    return records


def fetch_data(entries: list[dict], downloads, lock) -> None:
    """The fetch_data rule: the fetch.data entries that unpack into data.raw_dir."""
    fetch_all(entries, downloads, lock)


fetch_data.needs_network = True
