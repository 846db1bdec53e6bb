"""Check a raw input folder before anything else runs.

The folder holds the ECR data release layout (ECR_SPEC 1): the three dialog files, ``entity2id.json``,
``relation2id.json``, ``dbpedia_subkg.json`` and, optionally, the entity-annotated review file. Every file
is read in full; the first problem raises :class:`~ecrflow.errors.InputError` naming file, line and what
was expected. Where the reference silently skips (empty dialogs, URIs missing from entity2id), the report
counts the cases instead, with examples. The report also fingerprints every file (sha256), so result
tables can say which data they came from.

The splits are checked against each other: a conversationId, or a dialogue with the same messages, in two
splits would let the test set leak into training; it stops validation naming both files and lines
(``data.split_overlap: allow`` counts such dialogues in the report instead). An ``@id`` mention with no
``movieMentions`` entry is kept in the text as the reference keeps it, and counted with examples.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..constants import SPLITS
from ..errors import InputError
from ..io import read_json, sha256_file
from ..kg import build_kg, load_id_map
from .redial import QUIRK_COUNTS, RELEASE_HINT, ReadStats, read_dialogs
from .turns import MENTION

UNKNOWN_ENTITY_POLICIES = ("drop", "error")
SPLIT_OVERLAP_POLICIES = ("error", "allow")


class SplitOverlap:
    """Dialogues seen so far by conversationId and by their messages' texts, per split."""

    def __init__(self, policy: str):
        if policy not in SPLIT_OVERLAP_POLICIES:
            raise ValueError(f"split_overlap must be one of {SPLIT_OVERLAP_POLICIES}, got {policy!r}")
        self.policy = policy
        self.seen: dict[str, dict[str, tuple[str, int]]] = {"conversation_ids": {}, "identical_dialogues": {}}
        self.report = {"conversation_ids": 0, "identical_dialogues": 0, "examples": []}

    def check(self, dialog, path: Path) -> None:
        texts = "\x1e".join(m.text for m in dialog.messages)
        keys = {"conversation_ids": dialog.dialog_id,
                "identical_dialogues": hashlib.sha256(texts.encode("utf-8")).hexdigest()}
        for kind, key in keys.items():
            other = self.seen[kind].get(key)
            if other is not None and other[0] != path.name:  # within one split: process_split renames, counted
                what = f"conversationId {dialog.dialog_id}" if kind == "conversation_ids" else "the same messages"
                where = f"{other[0]}, line {other[1]}"
                if self.policy == "error":
                    raise InputError(path, f"{what} also in {where}: a dialogue in two splits leaks between "
                                           f"them", line=dialog.line, field="conversationId" if
                                     kind == "conversation_ids" else "messages",
                                     hint="remove it from one of the splits, or set data.split_overlap: allow to "
                                          "count such dialogues in validation.json instead")
                self.report[kind] += 1
                if len(self.report["examples"]) < 5:
                    self.report["examples"].append(f"{path.name}, line {dialog.line}: {what} also in {where}")
            self.seen[kind].setdefault(key, (path.name, dialog.line))


def required_files(dialog_pattern: str, reviews: str | None) -> list[str]:
    files = [dialog_pattern.format(split=s) for s in SPLITS]
    files += ["entity2id.json", "relation2id.json", "dbpedia_subkg.json"]
    if reviews:
        files.append(reviews)
    return files


def check_present(raw_dir, dialog_pattern: str, reviews: str | None) -> None:
    raw_dir = Path(raw_dir)
    missing = [f for f in required_files(dialog_pattern, reviews) if not (raw_dir / f).exists()]
    if missing:
        raise InputError(raw_dir, "missing input file(s): " + ", ".join(missing), hint=RELEASE_HINT)


def validate_reviews(path) -> dict:
    """``{movie name: [{title, content, votes, content_e_0.1?, ...}, ...]}`` (ECR_SPEC 1.3)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object {movie name: [review, ...]}")
    n_reviews = n_annotated = 0
    for movie, reviews in data.items():
        if not isinstance(reviews, list):
            raise InputError(path, f"movie {movie!r}: expected a list of reviews")
        for k, rev in enumerate(reviews):
            where = f"movie {movie!r}, review {k}"
            if not isinstance(rev, dict):
                raise InputError(path, f"{where}: expected an object with title, content, votes")
            content = rev.get("content")
            if isinstance(content, list):
                content = content[0] if content else None
            if not isinstance(content, str) or not isinstance(rev.get("title"), str):
                raise InputError(path, f"{where}: 'title' must be a string and 'content' a string or a list "
                                 f"whose first element is the review text")
            votes = rev.get("votes")
            if not isinstance(votes, int) or isinstance(votes, bool) or votes < 0:
                raise InputError(path, f"{where}: 'votes' must be a non-negative int, got {votes!r}")
            for key in ("content_e_0.1", "title_e_0.1"):
                if key in rev:
                    ann = rev[key]
                    ok = isinstance(ann, list) and all(
                        isinstance(a, list) and len(a) == 2 and isinstance(a[0], str)
                        and isinstance(a[1], (int, float)) for a in ann)
                    if not ok:
                        raise InputError(path, f"{where}: {key!r} must be a list of [entity URI, score] pairs")
            n_annotated += "content_e_0.1" in rev
            n_reviews += 1
    return {"movies": len(data), "reviews": n_reviews, "reviews_with_entities": n_annotated}


def validate_raw(raw_dir, *, dialog_pattern: str, require_emotion: bool, unknown_entities: str = "drop",
                 reviews: str | None = None, split_overlap: str = "error") -> dict:
    """Validate the raw folder; return the report (counts, warnings, fingerprints)."""
    overlap = SplitOverlap(split_overlap)
    if unknown_entities not in UNKNOWN_ENTITY_POLICIES:
        raise ValueError(f"unknown_entities must be one of {UNKNOWN_ENTITY_POLICIES}, got {unknown_entities!r}")
    raw_dir = Path(raw_dir)
    check_present(raw_dir, dialog_pattern, reviews)
    entity2id = load_id_map(raw_dir / "entity2id.json", "entity")
    relation2id = load_id_map(raw_dir / "relation2id.json", "relation")
    kg = build_kg(entity2id, relation2id, read_json(raw_dir / "dbpedia_subkg.json"),
                  subkg_path=raw_dir / "dbpedia_subkg.json", relation2id_path=raw_dir / "relation2id.json")
    report: dict = {
        "raw_dir": str(raw_dir),
        "kg": {"entities": len(entity2id), "relations": len(relation2id), "triples": kg.n_triples,
               "edges": int(kg.edge_index.shape[1])},
        "splits": {},
    }
    for split in SPLITS:
        path = raw_dir / dialog_pattern.format(split=split)
        stats = ReadStats()
        seeker_msgs = with_emotion = 0
        for dialog in read_dialogs(path, require_emotion=require_emotion, stats=stats):
            overlap.check(dialog, path)
            for k, msg in enumerate(dialog.messages):
                for mid in MENTION.findall(msg.text):
                    if mid not in dialog.movie_mentions:
                        stats.warn("unknown_movie_mentions", f"dialog {dialog.dialog_id}, message {k}: @{mid}")
                for uri in msg.entities + msg.movies:
                    if uri not in entity2id:
                        if unknown_entities == "error":
                            raise InputError(path, f"message {k}: entity {uri} is not in entity2id.json "
                                             f"(data.unknown_entities: error)", line=dialog.line,
                                             hint="set data.unknown_entities: drop to drop such URIs with a count, "
                                                  "as UniCRS's remove_entity.py does")
                        stats.warn("unknown_entity_uris", uri)
                if msg.sender == dialog.initiator:
                    seeker_msgs += 1
                    with_emotion += bool(msg.emotion)
        report["splits"][split] = {
            "file": path.name,
            "counts": {"dialogs": 0, "messages": 0, **dict.fromkeys(QUIRK_COUNTS, 0), "unknown_movie_mentions": 0,
                       **stats.counts},
            "seeker_messages": seeker_msgs,
            "seeker_messages_with_emotion": with_emotion,
            "warning_examples": stats.examples,
        }
        if stats.counts["dialogs"] == 0:
            raise InputError(path, "no dialog with messages; expected one ReDial conversation per line")
    report["split_overlap"] = {"policy": split_overlap, **overlap.report}
    if reviews:
        report["reviews"] = validate_reviews(raw_dir / reviews)
    report["fingerprint"] = {f: sha256_file(raw_dir / f) for f in required_files(dialog_pattern, reviews)}
    return report


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def mark_changed_raw_files(raw_dir, names: list[str], validation, cache) -> list[str]:
    """Raw files whose content differs from the sha256 that ``validation`` (validation.json) recorded get a
    new modification time, so that everything that read them reruns: Snakemake compares times, and a copy
    that keeps them (``cp -p``, rsync -t, an unpacked archive) would otherwise change nothing. Returns the
    files marked, with both checksums.

    Hashes are kept in ``cache`` (JSON) by size, mtime, ctime and inode, so a dry run does not read the
    release again; any write to a file changes its ctime, which ``cp -p`` cannot set back."""
    import json

    from ..io import write_json

    validation, cache = Path(validation), Path(cache)
    if not validation.exists():
        return []
    try:
        recorded = json.loads(validation.read_text(encoding="utf-8")).get("fingerprint") or {}
        known = json.loads(cache.read_text(encoding="utf-8")) if cache.exists() else {}
    except (json.JSONDecodeError, OSError):
        return []  # a damaged record is rebuilt by the next validation, never trusted
    marked, changed_cache = [], False
    for name in names:
        path = Path(raw_dir) / name
        if name not in recorded or not path.exists():
            continue
        key = _stat_key(path)
        entry = known.get(str(path))
        if entry is None or entry["stat"] != key:
            entry = {"stat": key, "sha256": sha256_file(path)}
            known[str(path)], changed_cache = entry, True
        if entry["sha256"] != recorded[name] and path.stat().st_mtime_ns <= validation.stat().st_mtime_ns:
            os.utime(path)  # now: newer than every output made from the old content
            known[str(path)] = {"stat": _stat_key(path), "sha256": entry["sha256"]}
            changed_cache = True
            marked.append(f"{path}: content changed since {validation} (sha256 {recorded[name][:12]}... there, "
                          f"{entry['sha256'][:12]}... now) with its modification time kept; marked as changed")
    if changed_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, known)
    return marked
