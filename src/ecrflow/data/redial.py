"""Readers for the ReDial dialog files of the ECR data release and of UniCRS.

One JSON object per line, one ReDial conversation per object (see ECR_SPEC 1.1). Two variants exist:

- ECR's ``{split}_data_dbpedia_emo.jsonl``: seeker messages carry an ``emotion`` field, either a dict of the
  nine labels to probabilities (sorted descending in the release) or an empty list;
- UniCRS's ``{split}_data_dbpedia_raw.jsonl``: the same without ``emotion``.

Parsing is strict where the reference would crash later or silently mis-align, and lenient (with a counted
warning) where the reference silently skips (empty dialogs). Every error names file, line and expectation.

Quirks of the real files, each counted in the read statistics (and so in validation.json):
- a ``movieMentions`` name written as ``null``: an empty name, as the reference reads it;
- ``movieMentions`` / ``initiatorQuestions`` / ``respondentQuestions`` written as ``[]``: an empty dict, as
  the reference reads it (``respondentQuestions`` is otherwise never read, as in the reference);
- a message whose ``senderWorkerId`` is neither participant: dropped. The reference makes every
  non-initiator message a recommender turn, which turns such a message into a recommendation sample whose
  target may be the seeker's own movie; ReDial has no third speaker, so the message has no valid role;
- a seeker message with empty text: kept (it has no content and no entities), counted.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..constants import EMOTIONS
from ..errors import InputError
from ..io import iter_jsonl

RELEASE_HINT = (
    "the ECR data release (emo_data) provides {train,valid,test}_data_dbpedia_emo.jsonl, entity2id.json, "
    "relation2id.json and dbpedia_subkg.json; `ecrflow fetch` downloads and unpacks it (config fetch.data), "
    "or unpack it yourself into the folder named by data.raw_dir in the config"
)


@dataclass(frozen=True)
class Message:
    sender: int
    text: str
    entities: tuple[str, ...]
    movies: tuple[str, ...]
    # Parallel to ``movies``; None where the file has no (or a non-parallel) movie_name list.
    movie_names: tuple[str | None, ...]
    # None: the message has no emotion field; (): an empty label set; else (label, p) sorted by p desc.
    emotion: tuple[tuple[str, float], ...] | None


@dataclass
class Dialog:
    dialog_id: str
    line: int
    initiator: int
    respondent: int
    movie_mentions: dict[str, str]
    initiator_questions: dict[str, dict]
    messages: list[Message]


# The counted quirks of real files, reported with 0 when absent so that a report shows they were checked.
QUIRK_COUNTS = ("movie_mentions_null_name", "movie_mentions_empty_list", "initiator_questions_empty_list",
                "respondent_questions_empty_list", "messages_from_unknown_sender_dropped",
                "seeker_messages_empty_text", "movie_name_not_parallel", "empty_dialogs_skipped", "blank_lines")


@dataclass
class ReadStats:
    """Counted warnings and totals collected while reading; written into the validation report."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def warn(self, kind: str, example: str, keep: int = 5) -> None:
        self.counts[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < keep:
            ex.append(example)


DIALOG_HINT = ("each line is one ReDial conversation as the ECR release (*_data_dbpedia_emo.jsonl) and UniCRS "
               "(*_data_dbpedia_raw.jsonl) write it; fix or remove this conversation, or fetch an intact copy")


def _expect(cond: bool, path, line: int, message: str, field: str | None = None) -> None:
    if not cond:
        raise InputError(path, message, line=line, field=field, hint=DIALOG_HINT)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_emotion(value: Any, path, line: int, where: str) -> tuple[tuple[str, float], ...]:
    """An ``emotion`` field: a dict label -> probability, or an empty list. Returns pairs sorted by p desc."""
    if isinstance(value, list):
        _expect(len(value) == 0, path, line, f"{where}: 'emotion' must be a dict of label -> probability "
                f"or an empty list, got a non-empty list")
        return ()
    _expect(isinstance(value, dict), path, line,
            f"{where}: 'emotion' must be a dict of label -> probability or [], got {type(value).__name__}")
    pairs = []
    for label, p in value.items():
        _expect(label in EMOTIONS, path, line,
                f"{where}: unknown emotion label {label!r}; expected one of {', '.join(EMOTIONS)}",
                f"{where}.emotion")
        _expect(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and 0 <= p <= 1,
                path, line, f"{where}: emotion probability for {label!r} must be a number in [0, 1], got {p!r}",
                f"{where}.emotion[{label!r}]")
        pairs.append((label, float(p)))
    # Stable sort: the release is already sorted; ties keep file order, as the reference's dict order does.
    pairs.sort(key=lambda lp: -lp[1])
    return tuple(pairs)


def _uri_list(msg: dict, key: str, path, line: int, where: str) -> tuple[str, ...]:
    value = msg.get(key, [])
    _expect(isinstance(value, list), path, line, f"{where}: {key!r} must be a list of DBpedia URIs",
            f"{where}.{key}")
    for uri in value:
        _expect(isinstance(uri, str) and uri.startswith("<") and uri.endswith(">") and len(uri) > 2, path, line,
                f"{where}: {key!r} holds {uri!r}; expected a URI in angle brackets such as "
                f"'<http://dbpedia.org/resource/Foo>'", f"{where}.{key}")
    return tuple(value)


_COUNT_KEY = {"movieMentions": "movie_mentions", "initiatorQuestions": "initiator_questions",
              "respondentQuestions": "respondent_questions"}


def _id_dict(value: Any, key: str, path, line: int, stats: ReadStats) -> dict:
    # ReDial writes an empty dict as [] in some records; the reference treats it as {}.
    if isinstance(value, list) and not value:
        stats.warn(f"{_COUNT_KEY[key]}_empty_list", f"{Path(path).name}:{line}")
        return {}
    _expect(isinstance(value, dict), path, line, f"{key!r} must be a dict (or an empty list), "
            f"got {type(value).__name__}", key)
    return value


# What a seeker message without 'emotion' means, by data.emotions (the setting that requires labels).
_MISSING_EMOTION = {
    "dataset": ("this config reads emotion labels from the dataset (data.emotions: dataset)",
                "use the ECR release's *_data_dbpedia_emo.jsonl, or set data.emotions: none to process dialogs "
                "without emotion labels, or data.emotions: pipeline to label them with the emotion rules"),
    "pipeline": ("this file was labelled by the emotion rules (data.emotions: pipeline), which label every "
                 "seeker message", "rerun rule emotion_label for this split (snakemake --forcerun emotion_label); "
                 "a file labelled by an older version of ecrflow may lack labels"),
}


def parse_dialog(obj: Any, path, line: int, *, require_emotion: bool, stats: ReadStats,
                 emotion_source: str = "dataset") -> Dialog | None:
    """Parse one conversation; None for a dialog without messages (counted, as the reference skips it).
    ``emotion_source`` (data.emotions) only words the error for a seeker message without labels."""
    _expect(isinstance(obj, dict), path, line, f"expected a JSON object (one conversation), got {type(obj).__name__}")
    for key in ("messages", "initiatorWorkerId", "respondentWorkerId"):
        _expect(key in obj, path, line, f"missing key {key!r} (a ReDial conversation has messages, "
                f"initiatorWorkerId, respondentWorkerId, movieMentions, initiatorQuestions)", key)
    messages = obj["messages"]
    _expect(isinstance(messages, list), path, line, "'messages' must be a list")
    dialog_id = str(obj.get("conversationId", f"line{line}"))
    if not messages:
        stats.warn("empty_dialogs_skipped", f"{Path(path).name}:{line}")
        return None
    initiator, respondent = obj["initiatorWorkerId"], obj["respondentWorkerId"]
    _expect(_is_int(initiator) and _is_int(respondent), path, line, "initiatorWorkerId and respondentWorkerId must be ints")
    mentions = dict(_id_dict(obj.get("movieMentions", {}), "movieMentions", path, line, stats))
    for mid, name in mentions.items():
        if name is None:
            # Real ReDial writes some names as null; the reference reads them as an empty name.
            stats.warn("movie_mentions_null_name", f"{Path(path).name}:{line} movieMentions[{mid!r}]")
            mentions[mid] = ""
            continue
        _expect(isinstance(name, str), path, line, f"movieMentions[{mid!r}] must be a movie name string or null, "
                f"got {type(name).__name__}", f"movieMentions[{mid!r}]")
    questions = _id_dict(obj.get("initiatorQuestions", {}), "initiatorQuestions", path, line, stats)
    _id_dict(obj.get("respondentQuestions", {}), "respondentQuestions", path, line, stats)  # counted, never read
    for mid, q in questions.items():
        _expect(isinstance(q, dict), path, line, f"initiatorQuestions[{mid!r}] must be a dict with 'liked'",
                f"initiatorQuestions[{mid!r}]")
        liked = q.get("liked", 2)
        _expect(liked in (0, 1, 2), path, line,
                f"initiatorQuestions[{mid!r}].liked must be 0 (disliked), 1 (liked) or 2 (did not say), got {liked!r}",
                f"initiatorQuestions[{mid!r}].liked")

    parsed: list[Message] = []
    for k, msg in enumerate(messages):
        where = f"message {k}"
        _expect(isinstance(msg, dict), path, line, f"{where}: expected an object", f"messages[{k}]")
        sender = msg.get("senderWorkerId")
        _expect(_is_int(sender), path, line, f"{where}: 'senderWorkerId' must be an int",
                f"messages[{k}].senderWorkerId")
        text = msg.get("text")
        _expect(isinstance(text, str), path, line, f"{where}: 'text' must be a string", f"messages[{k}].text")
        if sender not in (initiator, respondent):
            # No valid role: as a recommender turn it would make a wrong sample (see the module docstring).
            stats.warn("messages_from_unknown_sender_dropped", f"{Path(path).name}:{line} {where} "
                       f"(sender {sender}, participants {initiator}, {respondent})")
            continue
        if sender == initiator and not text.strip():
            stats.warn("seeker_messages_empty_text", f"{Path(path).name}:{line} {where}")
        entities = _uri_list(msg, "entity", path, line, where)
        movies = _uri_list(msg, "movie", path, line, where)
        names = msg.get("movie_name", [])
        if isinstance(names, list) and len(names) == len(movies) and all(isinstance(n, str) for n in names):
            movie_names = tuple(names)
        else:
            stats.warn("movie_name_not_parallel", f"{Path(path).name}:{line} {where}")
            movie_names = (None,) * len(movies)
        if "emotion" in msg:
            emotion = parse_emotion(msg["emotion"], path, line, where)
        else:
            emotion = None
            if require_emotion and sender == initiator:
                why, hint = _MISSING_EMOTION.get(emotion_source, _MISSING_EMOTION["dataset"])
                raise InputError(path, f"{where}: seeker message without 'emotion'; {why}", line=line,
                                 field=f"messages[{k}].emotion", hint=hint,
                                 expected="an 'emotion' dict of label -> probability (or []) on every seeker message")
        parsed.append(Message(sender, text, entities, movies, movie_names, emotion))
    if not parsed:  # every message dropped: as an empty dialog
        stats.warn("empty_dialogs_skipped", f"{Path(path).name}:{line}")
        return None
    return Dialog(dialog_id, line, initiator, respondent, mentions, dict(questions), parsed)


def read_dialogs(path, *, require_emotion: bool, stats: ReadStats | None = None,
                 emotion_source: str = "dataset") -> Iterator[Dialog]:
    """Yield the non-empty dialogs of a ReDial jsonl file, raising :class:`InputError` on the first bad line."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", hint=RELEASE_HINT)
    stats = stats if stats is not None else ReadStats()
    lines = iter_jsonl(path, expected="one conversation object per line",
                       on_blank=lambda n: stats.warn("blank_lines", f"{path.name}:{n}"))
    for line_no, obj in lines:
        dialog = parse_dialog(obj, path, line_no, require_emotion=require_emotion, stats=stats,
                              emotion_source=emotion_source)
        if dialog is not None:
            stats.counts["dialogs"] += 1
            stats.counts["messages"] += len(dialog.messages)
            yield dialog
