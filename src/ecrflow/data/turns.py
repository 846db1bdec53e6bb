"""Shared preprocessing primitives (ECR_SPEC 2): utterance normalisation, turn grouping, entity ids,
emotion selection and the attachment of emotions to a turn's entities.

Intentional differences from the reference, each a fix of a defect in ECR_SPEC 8:
- speaker roles are stored explicitly per context turn instead of relying on index parity and a ``''``
  placeholder (8.25: the seeker's first turn was tagged "System:" in pre-training);
- one emotion rule everywhere (8.8: the reference's process.py and co_appear.py fall back to the first label,
  process_mask.py does not); the fallback is a config switch;
- a turn's emotion list is kept sorted by probability, so "the top n_y labels" means the most probable ones
  (8.7: the reference keeps the last three of a concatenation). ``turn_merge: concat`` restores the
  reference's concatenation in message order;
- per-movie feedback is built from the same entity2id-filtered movie list as the targets, so the two can
  never drift apart, and an unmatched name counts as not-said with a counted warning instead of a KeyError
  (8.9);
- a message whose sender is neither participant never reaches the turns (the reader drops it, counted): the
  reference's "not the initiator, so the recommender" would make it a recommendation sample.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from ..constants import FEEDBACK_FROM_LIKED, MOVIE_TOKEN, NOT_SAID, RECOMMENDER, SEEKER
from .redial import Dialog, Message, ReadStats

MENTION = re.compile(r"@(\d+)")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class EmotionRule:
    """How message emotions become entity emotions (ECR_SPEC 2)."""

    threshold: float = 0.1  # beta: keep labels with p > threshold
    fallback_top1: bool = True  # keep the top label of a seeker message that mentions entities if none pass
    turn_merge: str = "max"  # "max": one entry per label (max p), sorted desc; "concat": the reference's


def collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def normalise_utterance(text: str, movie_mentions: dict[str, str], mask: bool = False) -> str:
    """Replace ``@id`` by the movie's name (or ``<movie>``), collapse whitespace, unescape HTML entities."""

    def sub(m: re.Match) -> str:
        mid = m.group(1)
        if mid not in movie_mentions:
            return m.group(0)  # unknown ids stay as they are, as in the reference
        return MOVIE_TOKEN if mask else collapse(movie_mentions[mid])

    return html.unescape(collapse(MENTION.sub(sub, text)))


def select_emotions(msg: Message, rule: EmotionRule, is_seeker: bool, mentions_entity: bool) -> list[tuple[str, float]]:
    """Labels of one message with p > threshold, sorted by p; with the fallback, the top label of a seeker
    message that mentions an entity or movie when nothing passes the threshold."""
    if not msg.emotion:
        return []
    kept = [(lab, p) for lab, p in msg.emotion if p > rule.threshold]
    if not kept and rule.fallback_top1 and is_seeker and mentions_entity:
        kept = [msg.emotion[0]]
    return kept


def merge_emotions(per_message: list[list[tuple[str, float]]], how: str) -> list[tuple[str, float]]:
    if how == "concat":
        return [lp for lst in per_message for lp in lst]
    best: dict[str, float] = {}
    for lst in per_message:
        for lab, p in lst:
            if p > best.get(lab, -1.0):
                best[lab] = p
    return sorted(best.items(), key=lambda lp: -lp[1])


def _squash(name: str) -> str:
    return "".join(name.split())


def match_redial_id(name: str | None, text: str, movie_mentions: dict[str, str]) -> str | None:
    """The ReDial movie id of a movie name in a message: names are compared with all whitespace removed
    (ReDial's names differ in spacing), first among the ``@id`` mentions of this message, then among all
    mentions of the dialog."""
    key = _squash(name) if name is not None else ""
    if not key:  # nothing to match; an empty name must not match a null (emptied) movieMentions name
        return None
    in_message = [m for m in MENTION.findall(text) if m in movie_mentions]
    for mid in in_message + list(movie_mentions):
        if _squash(movie_mentions[mid]) == key:
            return mid
    return None


@dataclass
class Turn:
    """Consecutive messages of one sender, merged (texts joined by a space, lists concatenated)."""

    role: str
    text: str
    masked_text: str
    movie_ids: list[int] = field(default_factory=list)  # entity2id-filtered, in message order
    movie_redial_ids: list[str | None] = field(default_factory=list)  # parallel to movie_ids
    movie_names: list[str | None] = field(default_factory=list)  # parallel to movie_ids, whitespace collapsed
    entity_ids: list[int] = field(default_factory=list)  # non-movie entities, entity2id-filtered
    emotions: list[tuple[str, float]] = field(default_factory=list)  # this turn's own emotions

    @property
    def ids(self) -> list[int]:
        """Every entity this turn contributes: movies first, then other entities (reference order)."""
        return self.movie_ids + self.entity_ids


def build_turns(dialog: Dialog, entity2id: dict[str, int], rule: EmotionRule, stats: ReadStats | None = None) -> list[Turn]:
    stats = stats if stats is not None else ReadStats()
    groups: list[list[Message]] = []
    for msg in dialog.messages:
        if groups and groups[-1][0].sender == msg.sender:
            groups[-1].append(msg)
        else:
            groups.append([msg])

    turns = []
    for group in groups:
        is_seeker = group[0].sender == dialog.initiator
        turn = Turn(
            role=SEEKER if is_seeker else RECOMMENDER,
            text=collapse(" ".join(normalise_utterance(m.text, dialog.movie_mentions) for m in group)),
            masked_text=collapse(" ".join(normalise_utterance(m.text, dialog.movie_mentions, mask=True) for m in group)),
        )
        per_message = []
        for msg in group:
            movie_ids, redial_ids, names = [], [], []
            for uri, name in zip(msg.movies, msg.movie_names):
                if uri not in entity2id:
                    stats.warn("unknown_movie_uris_dropped", uri)
                    continue
                movie_ids.append(entity2id[uri])
                names.append(collapse(name) if name is not None else None)
                rid = match_redial_id(name, msg.text, dialog.movie_mentions)
                if rid is None:
                    stats.warn("movie_names_unmatched", f"dialog {dialog.dialog_id}: {name!r}")
                redial_ids.append(rid)
            entity_ids = []
            for uri in msg.entities:
                if uri in entity2id:
                    entity_ids.append(entity2id[uri])
                else:
                    stats.warn("unknown_entity_uris_dropped", uri)
            turn.movie_ids += movie_ids
            turn.movie_redial_ids += redial_ids
            turn.movie_names += names
            turn.entity_ids += entity_ids
            per_message.append(select_emotions(msg, rule, is_seeker, bool(movie_ids or entity_ids)))
        turn.emotions = merge_emotions(per_message, rule.turn_merge)
        turns.append(turn)
    return turns


def entity_emotions(turns: list[Turn], t: int) -> list[tuple[str, float]]:
    """Emotions attached to the entities of turn t: a seeker turn's own emotions; for a recommender turn,
    the emotions of the next turn (the user's reaction), or none if it is the last turn."""
    if turns[t].role == SEEKER:
        return turns[t].emotions
    return turns[t + 1].emotions if t + 1 < len(turns) else []


def feedback(dialog: Dialog, redial_id: str | None) -> str:
    """like / dislike / not_said for a movie, from initiatorQuestions (absent means not said)."""
    if redial_id is None:
        return NOT_SAID
    liked = dialog.initiator_questions.get(redial_id, {}).get("liked", 2)
    return FEEDBACK_FROM_LIKED[liked]


def suggested(dialog: Dialog, redial_id: str | None) -> int:
    """initiatorQuestions[id].suggested: 1 suggested by the recommender, 0 mentioned by the seeker, -1 unknown."""
    if redial_id is None:
        return -1
    return int(dialog.initiator_questions.get(redial_id, {}).get("suggested", -1))


SPEAKER_TAGS = {SEEKER: "User", RECOMMENDER: "System"}


def serialise_context(texts: list[str], roles: list[str], sep: str) -> str:
    """``"User: u0<sep>System: u1<sep>..."`` from explicit roles (ECR_SPEC 2), empty turns skipped.

    The tag comes from each turn's stored role, so a dialog opened by the seeker is tagged correctly; the
    reference derives tags from index parity and mislabels the seeker's first turn in pre-training (8.25).
    ``sep`` is the language model's separator (``<|endoftext|>`` for DialoGPT, ``</s>`` for RoBERTa).
    """
    return "".join(f"{SPEAKER_TAGS[r]}: {t}{sep}" for t, r in zip(texts, roles) if t)
