"""Processed samples (ECR_SPEC 3.1, 3.2) and per-dialog entity sequences (input of 3.7), as Parquet.

Three tables per split, one row each:

- ``pretrain``: every turn of both roles (3.1). ``rec`` holds the turn's de-duplicated movie and entity ids
  (the pre-training targets), ``entity`` the ids of all previous turns in order, duplicates kept, with the
  emotions attached to each (``entity_emotions`` / ``entity_emotion_probs``);
- ``rec``: every recommender turn (3.2), recorded before the turn extends the context: masked response,
  the turn's movie ids with per-movie feedback (``rec_feedback``: like / dislike / not_said) and the
  emotions of the next seeker turn (``next_emotions``, default ``["neutral"]`` with p 1.0 as in the
  reference);
- ``sequences``: one row per dialog, the chronological entity list with emotions; the co-occurrence counts
  of the global entities are built from it.

Contexts are stored as parallel ``context`` (texts) and ``context_roles`` lists, with no ``''`` placeholder;
dialogs are keyed by ``dialog_id`` and turns by ``turn`` (the index in the dialog's turn list), so every
later join uses keys, never line order (ECR_SPEC 8.16).
"""

from __future__ import annotations

import pyarrow as pa

from ..constants import RECOMMENDER
from .redial import Dialog, ReadStats, read_dialogs
from .turns import EmotionRule, Turn, build_turns, entity_emotions, feedback, suggested

_labels = pa.list_(pa.string())
_probs = pa.list_(pa.float32())

PRETRAIN_SCHEMA = pa.schema([
    ("dialog_id", pa.string()),
    ("turn", pa.int32()),
    ("role", pa.string()),
    ("context", pa.list_(pa.string())),
    ("context_roles", pa.list_(pa.string())),
    ("resp", pa.string()),
    ("rec", pa.list_(pa.int64())),
    ("entity", pa.list_(pa.int64())),
    ("entity_emotions", pa.list_(_labels)),
    ("entity_emotion_probs", pa.list_(_probs)),
])

REC_SCHEMA = pa.schema([
    ("dialog_id", pa.string()),
    ("turn", pa.int32()),
    ("context", pa.list_(pa.string())),
    ("context_roles", pa.list_(pa.string())),
    ("resp", pa.string()),  # masked: movies replaced by <movie>
    ("resp_text", pa.string()),  # the same turn with movie names, the reference response for generation
    ("rec", pa.list_(pa.int64())),
    ("rec_feedback", pa.list_(pa.string())),
    ("rec_redial_ids", pa.list_(pa.string())),
    ("rec_suggested", pa.list_(pa.int8())),
    ("next_emotions", _labels),
    ("next_emotion_probs", _probs),
    ("entity", pa.list_(pa.int64())),
    ("entity_emotions", pa.list_(_labels)),
    ("entity_emotion_probs", pa.list_(_probs)),
])

SEQUENCE_SCHEMA = pa.schema([
    ("dialog_id", pa.string()),
    ("entity", pa.list_(pa.int64())),
    ("entity_turn", pa.list_(pa.int32())),
    ("entity_is_movie", pa.list_(pa.bool_())),
    ("entity_name", pa.list_(pa.string())),  # the ReDial movie name for movies, null for other entities
    ("entity_emotions", pa.list_(_labels)),
    ("entity_emotion_probs", pa.list_(_probs)),
])


def _dedup(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


class _State:
    """The running context of one dialog: texts with roles, entities with their emotions."""

    def __init__(self) -> None:
        self.context: list[str] = []
        self.roles: list[str] = []
        self.entity: list[int] = []
        self.turn_of: list[int] = []
        self.is_movie: list[bool] = []
        self.names: list[str | None] = []
        self.labels: list[list[str]] = []
        self.probs: list[list[float]] = []

    def extend(self, turns: list[Turn], t: int) -> None:
        turn = turns[t]
        self.context.append(turn.text)
        self.roles.append(turn.role)
        emo = entity_emotions(turns, t)
        names = turn.movie_names + [None] * len(turn.entity_ids)
        for k, eid in enumerate(turn.ids):
            self.entity.append(eid)
            self.turn_of.append(t)
            self.is_movie.append(k < len(turn.movie_ids))
            self.names.append(names[k])
            self.labels.append([lab for lab, _ in emo])
            self.probs.append([p for _, p in emo])

    def snapshot(self) -> dict:
        return {
            "context": list(self.context),
            "context_roles": list(self.roles),
            "entity": list(self.entity),
            "entity_emotions": [list(x) for x in self.labels],
            "entity_emotion_probs": [list(x) for x in self.probs],
        }


def dialog_records(dialog: Dialog, entity2id: dict[str, int], rule: EmotionRule, stats: ReadStats):
    """The pretrain rows, rec rows and the sequence row of one dialog."""
    turns = build_turns(dialog, entity2id, rule, stats)
    state = _State()
    pretrain, rec = [], []
    for t, turn in enumerate(turns):
        base = {"dialog_id": dialog.dialog_id, "turn": t}
        snap = state.snapshot()
        pretrain.append({**base, "role": turn.role, **snap, "resp": turn.text, "rec": _dedup(turn.ids)})
        if turn.role == RECOMMENDER:
            nxt = turns[t + 1].emotions if t + 1 < len(turns) else []
            rec.append({
                **base, **snap,
                "resp": turn.masked_text,
                "resp_text": turn.text,
                "rec": list(turn.movie_ids),
                "rec_feedback": [feedback(dialog, rid) for rid in turn.movie_redial_ids],
                "rec_redial_ids": list(turn.movie_redial_ids),
                "rec_suggested": [suggested(dialog, rid) for rid in turn.movie_redial_ids],
                "next_emotions": [lab for lab, _ in nxt] or ["neutral"],
                "next_emotion_probs": [p for _, p in nxt] or [1.0],
            })
        state.extend(turns, t)
    sequence = {
        "dialog_id": dialog.dialog_id,
        "entity": state.entity,
        "entity_turn": state.turn_of,
        "entity_is_movie": state.is_movie,
        "entity_name": state.names,
        "entity_emotions": state.labels,
        "entity_emotion_probs": state.probs,
    }
    return pretrain, rec, sequence


def process_split(dialog_file, entity2id: dict[str, int], rule: EmotionRule, *, require_emotion: bool,
                  stats: ReadStats | None = None, emotion_source: str = "dataset") -> dict[str, pa.Table]:
    """Read one split's dialog file and build its three tables (``emotion_source``: data.emotions, named in
    the error for a seeker message without labels)."""
    stats = stats if stats is not None else ReadStats()
    pretrain, rec, sequences = [], [], []
    seen: set[str] = set()
    for dialog in read_dialogs(dialog_file, require_emotion=require_emotion, stats=stats,
                               emotion_source=emotion_source):
        if dialog.dialog_id in seen:
            # Keys must be unique for key-based joins; ReDial's conversationIds are.
            dialog.dialog_id = f"{dialog.dialog_id}@{dialog.line}"
            stats.warn("duplicate_dialog_ids_renamed", dialog.dialog_id)
        seen.add(dialog.dialog_id)
        p, r, s = dialog_records(dialog, entity2id, rule, stats)
        pretrain += p
        rec += r
        sequences.append(s)
    return {
        "pretrain": pa.Table.from_pylist(pretrain, schema=PRETRAIN_SCHEMA),
        "rec": pa.Table.from_pylist(rec, schema=REC_SCHEMA),
        "sequences": pa.Table.from_pylist(sequences, schema=SEQUENCE_SCHEMA),
    }



def split_summary(tables: dict[str, pa.Table], stats: ReadStats) -> dict:
    """The counts of one processed split (its ``{split}_stats.json``, read by the dataset_stats table):
    dialogs, turns, recommender turns, recommended items by feedback, and the reader's counted warnings."""
    feedback_counts = {k: 0 for k in ("like", "dislike", "not_said")}
    for fb in tables["rec"].column("rec_feedback").to_pylist():
        for f in fb:
            feedback_counts[f] += 1
    return {
        "dialogs": tables["sequences"].num_rows,
        "turns": tables["pretrain"].num_rows,
        "recommender_turns": tables["rec"].num_rows,
        "rec_items": sum(feedback_counts.values()),
        "feedback": feedback_counts,
        "counts": dict(stats.counts),
    }
