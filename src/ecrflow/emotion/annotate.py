"""LLM annotation of seeker utterances (paper App. A.1): a seeded sample of seeker utterances, each shown
with its dialogue history; the annotator names at most two emotions as free-form words. Answers are parsed
strictly: an answer that does not parse is counted and reported, never turned into a label.

The paper's prompt is not published; ``PROMPT`` follows its description (the history, the utterance, at most
two free-form emotion words). With constrained decoding the answer is one or two words of the mapping's
vocabulary; an HTTP server without guided decoding may answer anything, which the strict parser and the
unmapped-word count then expose.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..constants import SEEKER
from ..data.redial import read_dialogs

SYSTEM = ("You annotate the emotions of a movie seeker in a conversation with a movie recommender. "
          "Answer with one or two emotion words, separated by a comma, and nothing else.")
PROMPT = ("Conversation so far:\n{history}\n\nSeeker's latest utterance: \"{utterance}\"\n\n"
          "Which emotions does the seeker express in the latest utterance? At most two emotion words.")
_MOVIE = re.compile(r"@\d+")


@dataclass(frozen=True)
class AnnotationOptions:
    """The ``emotion_labels`` config section (the annotated split is the rule's input, not an option)."""

    IGNORED = ("split",)

    llm: dict  # the annotator's backend section, for ecrflow.llm.backend_from_config
    utterances: int  # seeker utterances sampled for annotation
    max_history: int  # earlier messages shown with each utterance
    constrained: bool  # decode only words of the mapping's vocabulary (local backends)
    batch_size: int
    seed: int
    max_attempts: int = 3  # prompts per utterance until the answer parses (ecrflow.llm.stage)


def clean_text(text: str) -> str:
    """An utterance as the annotator and the classifier see it: ReDial's @id movie tokens read "a movie"."""
    return _MOVIE.sub("a movie", text).strip()


def seeker_utterances(dialog_file, *, max_history: int) -> list[dict]:
    """Every seeker message with text, with the previous ``max_history`` messages as history."""
    rows = []
    for dialog in read_dialogs(dialog_file, require_emotion=False):
        lines = []
        for i, msg in enumerate(dialog.messages):
            role = SEEKER if msg.sender == dialog.initiator else "recommender"
            text = clean_text(msg.text)
            if role == SEEKER and text:
                rows.append({"dialog_id": dialog.dialog_id, "message": i, "text": text,
                             # lines[-0:] would be every line: max_history 0 shows none
                             "history": "\n".join(lines[-max_history:] if max_history > 0 else []) or "(none)"})
            lines.append(f"{'Seeker' if role == SEEKER else 'Recommender'}: {text}")
    return rows


def sample(rows: list[dict], n: int, seed: int) -> list[dict]:
    """A seeded sample of ``n`` rows (all of them when there are fewer), in their original order."""
    if len(rows) <= n:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return [rows[i] for i in keep]


RETRY_NOTE = "\n\n(Attempt {attempt}: answer with one or two emotion words separated by a comma, nothing else.)"


def answer_constraint(vocabulary: list[str], *, constrained: bool):
    from ..llm.constraint import Constraint

    return Constraint.words(sorted(vocabulary), max_words=2, sep=", ") if constrained else None


def request(row: dict, constraint, *, attempt: int = 1, max_tokens: int = 24):
    """One utterance's prompt; a re-ask after an unparseable answer adds a numbered reminder, so that it is
    a new request (a deterministic model would repeat itself) with a cache key of its own."""
    from ..llm.base import Request

    user = PROMPT.format(history=row["history"], utterance=row["text"])
    if attempt > 1:
        user += RETRY_NOTE.format(attempt=attempt)
    return Request(messages=(("system", SYSTEM), ("user", user)), max_tokens=max_tokens, constraint=constraint)


def requests(rows: list[dict], vocabulary: list[str], *, constrained: bool, max_tokens: int = 24):
    constraint = answer_constraint(vocabulary, constrained=constrained)
    return [request(r, constraint, max_tokens=max_tokens) for r in rows]


_ANSWER = re.compile(r"^\s*([A-Za-z][A-Za-z-]*)\s*(?:,\s*([A-Za-z][A-Za-z-]*)\s*)?\.?\s*$")


def parse_answer(text: str | None) -> list[str] | None:
    """One or two words separated by a comma (a final full stop allowed); None when it does not parse."""
    if text is None:
        return None
    m = _ANSWER.match(text)
    if not m:
        return None
    return [w.lower() for w in m.groups() if w]


def summarise(rows: list[dict], answers: list, table: dict[str, str]) -> tuple[list[dict], dict]:
    """Annotated rows (utterance, raw answer, words, mapped types) and a summary: parse failures, unmapped
    words with counts, label shares."""
    from .mapping import label_shares, map_words

    out, failures, unmapped, errors = [], 0, Counter(), 0
    for r, a in zip(rows, answers):
        words = parse_answer(a.text) if a.error is None else None
        errors += a.error is not None
        if words is None:
            failures += a.error is None
            out.append({**r, "answer": a.text, "error": a.error, "words": None, "labels": []})
            continue
        types, missing = map_words(words, table)
        unmapped.update(missing)
        out.append({**r, "answer": a.text, "error": None, "words": words, "labels": types})
    labelled = [o["labels"] for o in out if o["labels"]]
    summary = {"utterances": len(rows), "request_errors": errors, "unparseable": failures,
               "labelled": len(labelled), "without_known_word": sum(1 for o in out if o["words"] and not o["labels"]),
               "unmapped_words": dict(unmapped.most_common()), "label_shares": label_shares(labelled)}
    return out, summary
