"""Evaluation in conversation with a simulated user (the protocol of iEvaLM, Wang et al., EMNLP 2023, with a
simulator that cannot read the target).

For each sampled test dialogue that recommends movies (its targets: the movies the recommender mentioned
there), a seeker LLM talks with a system for up to ``turns`` system turns, starting from the dialogue's own
opening. After each system turn the system's ranking is checked: a target in its top k is a success and
ends the dialogue (the seeker found a movie). Two modes:

- ``target_given`` (iEvaLM): the seeker is told the target titles and must not say them; every seeker
  message passes a fuzzy leak filter (RapidFuzz ``partial_ratio_alignment`` of each target title, year
  dropped) that replaces a leaked title, and the leaks are counted;
- ``target_free``: the seeker gets only the preferences the dialogue states (the genres and people the
  seeker mentioned there, as linked by the release) and its opening, never a title. The filter still runs:
  a seeker that names a target by chance is counted too.

Metrics per system and mode (:func:`summarise`): recall@k of the last ranking, success rate by turn t (a
target in the top k at some turn <= t), turns to success (over the successes), and reward per turn (1/t for
a success at turn t, else 0: finding the movie sooner is worth more).

The seeker's requests (and the LLM baseline's) go through ``ecrflow.llm.stage.ask_all``: answers cached on
disk, a failed request fails the job after every other request was asked, a rerun sends only the missing
requests; the systems decode greedily, so a rerun replays the same dialogues from the cache.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from ..data.turns import normalise_utterance
from ..generate.prompts import title_without_year
from ..io import iter_jsonl
from .linking import EntityLinker

log = logging.getLogger(__name__)

MODES = ("target_given", "target_free")

SEEKER_SYSTEM = {
    "target_given": (
        "You are a person chatting with a movie recommender to find a movie to watch. You have these movies "
        "in mind: {targets}. Never say their titles. Describe what you want (genre, mood, actors, story) in "
        "one or two short sentences, and react to what the recommender suggests."),
    "target_free": (
        "You are a person chatting with a movie recommender to find a movie to watch. {preferences}Say what "
        "you want in one or two short sentences and react to what the recommender suggests. Do not name "
        "movie titles."),
}
RETRY_NOTE = "\n(Reply {attempt}: answer in one or two sentences.)"
LLM_RECOMMENDER_SYSTEM = ("You are a movie recommender chatting with a user. Recommend movies by their full "
                          "titles, with the year in parentheses, and say briefly why they fit.")


@dataclass(frozen=True)
class SimSettings:
    """The ``interactive`` config section."""

    dialogues: int
    turns: int
    k: int
    seed: int
    max_tokens: int = 40
    max_attempts: int = 2
    batch_size: int = 8
    leak_threshold: float = 90.0  # partial_ratio of a target title against a seeker message


@dataclass
class SimDialogue:
    dialog_id: str
    targets: list[int]
    target_names: list[str]
    opening: str
    preferences: list[str]
    turns: list[dict] = field(default_factory=list)  # {"role", "text", ...}
    rankings: list[list[int]] = field(default_factory=list)
    success_turn: int | None = None
    leaks: int = 0

    @property
    def done(self) -> bool:
        return self.success_turn is not None


def scripted_dialogues(dialog_file, linker: EntityLinker, entity2id: dict, items: set[int], n: int,
                       seed: int) -> list[SimDialogue]:
    """A seeded sample of ``n`` dialogues whose recommender mentions at least one movie of the item set
    and whose first seeker message has text (the opening)."""
    found = []
    for _, d in iter_jsonl(dialog_file, expected="a ReDial conversation object"):
        seeker = d.get("initiatorWorkerId")
        mentions = {k: v for k, v in (d.get("movieMentions") or {}).items() if v}
        messages = d.get("messages", [])
        targets = []
        for m in messages:
            if m.get("senderWorkerId") != seeker:
                targets += [entity2id[u] for u in (m.get("movie") or []) if u in entity2id and entity2id[u] in items]
        targets = list(dict.fromkeys(targets))
        first = next((m for m in messages if m.get("senderWorkerId") == seeker and (m.get("text") or "").strip()), None)
        if not targets or first is None:
            continue
        prefs = []
        for m in messages:
            if m.get("senderWorkerId") == seeker:
                prefs += [n for n in (m.get("entity_name") or []) if n]
        found.append(SimDialogue(str(d.get("conversationId")), targets, [linker.movie_name(t) for t in targets],
                                 normalise_utterance(first["text"], mentions), list(dict.fromkeys(prefs))))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(found))[:n]
    return [found[i] for i in sorted(order)]


def filter_leaks(text: str, titles: list[str], threshold: float) -> tuple[str, int]:
    """The text with every fuzzy occurrence of a title replaced by "that movie", and the number replaced.
    Titles shorter than four characters are matched exactly, case included, as words: a fuzzy match of
    "It" would hit every sentence."""
    from rapidfuzz import fuzz

    leaks = 0
    for title in titles:
        t = title_without_year(title)
        if not t:
            continue
        while True:
            if len(t) < 4:  # as written: "Up" is a title, "up" a word
                m = re.search(rf"\b{re.escape(t)}\b", text)
                span = (m.start(), m.end()) if m else None
            else:
                al = fuzz.partial_ratio_alignment(t.lower(), text.lower(), score_cutoff=threshold)
                span = (al.dest_start, al.dest_end) if al is not None and al.dest_end > al.dest_start else None
            if span is None:
                break
            text = text[:span[0]] + "that movie" + text[span[1]:]
            leaks += 1
    return text, leaks


def seeker_request(d: SimDialogue, mode: str, settings: SimSettings, attempt: int):
    """The seeker's next message: its persona, then the conversation from its side (its own messages as
    the assistant's)."""
    from ..llm.base import Request

    if mode == "target_given":
        system = SEEKER_SYSTEM[mode].format(targets="; ".join(d.target_names))
    else:
        prefs = f"You like: {', '.join(d.preferences)}. " if d.preferences else ""
        system = SEEKER_SYSTEM[mode].format(preferences=prefs)
    msgs = [("system", system)]
    for t in d.turns:
        msgs.append(("assistant" if t["role"] == "user" else "user", t["text"]))
    if attempt > 1:
        role, text = msgs[-1]
        msgs[-1] = (role, text + RETRY_NOTE.format(attempt=attempt))
    return Request(messages=tuple(msgs), max_tokens=settings.max_tokens)


def llm_recommender_request(d: SimDialogue, settings: SimSettings, attempt: int):
    from ..llm.base import Request

    msgs = [("system", LLM_RECOMMENDER_SYSTEM)] + [(t["role"], t["text"]) for t in d.turns]
    if attempt > 1:
        role, text = msgs[-1]
        msgs[-1] = (role, text + RETRY_NOTE.format(attempt=attempt))
    return Request(messages=tuple(msgs), max_tokens=settings.max_tokens)


def _clean(text: str) -> str:
    text = text.strip().split("\n")[0].strip()
    if not text:
        raise ValueError("empty message")
    return text


def ask_turn(backend, cache, dialogues: list[SimDialogue], make, *, settings: SimSettings, stage: str,
             counts: dict) -> list[str]:
    """One message for each dialogue (cached, re-asked once when empty); counts what was sent."""
    from ..llm.stage import ask_all

    counts["requests"] += len(dialogues)
    counts["sent"] += sum(cache.entry(make(d, 1).key(backend.model_id)) is None for d in dialogues)
    out = ask_all(backend, cache, len(dialogues), lambda i, k: make(dialogues[i], k),
                  lambda i, k, text: _clean(text), max_attempts=settings.max_attempts,
                  batch_size=settings.batch_size, stage=stage)
    return [o.value for o in out]


def converse(dialogues: list[SimDialogue], respond, seeker, cache, *, mode: str, settings: SimSettings,
             stage: str) -> dict:
    """Run every dialogue to success or the turn limit, in lock step (one batch of seeker requests per
    turn). ``respond(dialogues) -> [(reply text, ranked item ids)]`` is the system under test."""
    counts = {"requests": 0, "sent": 0}
    for d in dialogues:
        text, leaks = filter_leaks(d.opening, d.target_names, settings.leak_threshold)
        d.leaks += leaks
        d.turns = [{"role": "user", "text": text, "leaks": leaks}]
    for t in range(1, settings.turns + 1):
        active = [d for d in dialogues if not d.done]
        if not active:
            break
        for d, (reply, ranking) in zip(active, respond(active)):
            d.rankings.append(list(ranking))
            hit = [x for x in ranking[:settings.k] if x in d.targets]
            d.turns.append({"role": "assistant", "text": reply, "items": list(ranking[:settings.k]), "hit": hit})
            if hit:
                d.success_turn = t
        active = [d for d in active if not d.done]
        if t == settings.turns or not active:
            break
        for d, text in zip(active, ask_turn(seeker, cache, active, lambda d, k: seeker_request(d, mode, settings, k),
                                            settings=settings, stage=stage, counts=counts)):
            text, leaks = filter_leaks(text, d.target_names, settings.leak_threshold)
            d.leaks += leaks
            d.turns.append({"role": "user", "text": text, "leaks": leaks})
    return counts


def dialogue_record(d: SimDialogue, system: str, mode: str, k: int) -> dict:
    last = d.rankings[-1] if d.rankings else []
    return {"dialog_id": d.dialog_id, "system": system, "mode": mode, "targets": d.targets,
            "target_names": d.target_names, "preferences": d.preferences, "turns": d.turns,
            "system_turns": len(d.rankings), "success_turn": d.success_turn, "leaks": d.leaks,
            "recall": len(set(last[:k]) & set(d.targets)) / len(d.targets)}


def summarise(records: list[dict], *, k: int, turns: int) -> dict:
    """The metrics of one system and mode over its dialogues (see the module docstring)."""
    n = len(records)
    if not n:
        raise ValueError("no simulated dialogue to summarise")
    succ = [r["success_turn"] for r in records]
    out = {"dialogues": n, f"recall@{k}": float(np.mean([r["recall"] for r in records])),
           "success": sum(s is not None for s in succ) / n,
           "turns_to_success": float(np.mean([s for s in succ if s is not None])) if any(s is not None for s in succ)
           else float("nan"),
           "reward_per_turn": float(np.mean([1.0 / s if s is not None else 0.0 for s in succ])),
           "system_turns": float(np.mean([r["system_turns"] for r in records])),
           "leaks": int(sum(r["leaks"] for r in records)),
           "dialogues_with_leak": sum(r["leaks"] > 0 for r in records)}
    for t in range(1, turns + 1):
        out[f"success@{t}"] = sum(s is not None and s <= t for s in succ) / n
    return out
