"""Check a raw input folder before anything else runs.

The folder holds the ECR data release layout (ECR_SPEC 1): the three dialog files, ``entity2id.json``,
``relation2id.json``, ``dbpedia_subkg.json`` and, optionally, the entity-annotated review file. Every file
is read in full; the first problem raises :class:`~ecrflow.errors.InputError` naming file, line and what
was expected. Where the reference silently skips (empty dialogs, URIs missing from entity2id), the report
counts the cases instead, with examples. The report also fingerprints every file (sha256), so result
tables can say which data they came from.
"""

from __future__ import annotations

from pathlib import Path

from ..constants import SPLITS
from ..errors import InputError
from ..io import read_json, sha256_file
from ..kg import build_kg, load_id_map
from .redial import QUIRK_COUNTS, RELEASE_HINT, ReadStats, read_dialogs

UNKNOWN_ENTITY_POLICIES = ("drop", "error")


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
                 reviews: str | None = None) -> dict:
    """Validate the raw folder; return the report (counts, warnings, fingerprints)."""
    if unknown_entities not in UNKNOWN_ENTITY_POLICIES:
        raise ValueError(f"unknown_entities must be one of {UNKNOWN_ENTITY_POLICIES}, got {unknown_entities!r}")
    raw_dir = Path(raw_dir)
    check_present(raw_dir, dialog_pattern, reviews)
    entity2id = load_id_map(raw_dir / "entity2id.json", "entity")
    relation2id = load_id_map(raw_dir / "relation2id.json", "relation")
    kg = build_kg(entity2id, relation2id, read_json(raw_dir / "dbpedia_subkg.json"),
                  subkg_path=raw_dir / "dbpedia_subkg.json")
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
            for k, msg in enumerate(dialog.messages):
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
            "counts": {"dialogs": 0, "messages": 0, **dict.fromkeys(QUIRK_COUNTS, 0), **stats.counts},
            "seeker_messages": seeker_msgs,
            "seeker_messages_with_emotion": with_emotion,
            "warning_examples": stats.examples,
        }
        if stats.counts["dialogs"] == 0:
            raise InputError(path, "no dialog with messages; expected one ReDial conversation per line")
    if reviews:
        report["reviews"] = validate_reviews(raw_dir / reviews)
    report["fingerprint"] = {f: sha256_file(raw_dir / f) for f in required_files(dialog_pattern, reviews)}
    return report
