"""The LLM judge of Table 2 (paper Section 5.3 and App. E): the five subjective metrics on a 0-9 scale,
with every system's response to one context scored together in one prompt, each under a pseudonym.

The pseudonyms are shuffled per context (seeded by judge, dialogue, turn and attempt), so that no system
sits in the same position every time, and are mapped back to systems when the answer is read. Answers are
parsed strictly: an answer that does not parse is retried with a fresh shuffle (a new prompt, so a
deterministic backend does not simply repeat itself), up to ``max_attempts``; a context whose answers never
parse is reported and left out, never scored 0.

The paper's exact prompt wording is in its appendix, not in the released code; ``SYSTEM`` and ``USER``
follow its description (definitions of the five metrics, the history, the recommended item, the responses
under pseudonyms, integer scores 0-9) and can be replaced through ``judge.prompt_file``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from ..llm.base import Request
from ..llm.constraint import Constraint, ParseError

log = logging.getLogger(__name__)

# metric key -> (the paper's name, what the judge is told it means)
METRICS: dict[str, tuple[str, str]] = {
    "emo_int": ("Emotional Intensity", "the strength of the emotions the response conveys"),
    "emo_pers": ("Emotional Persuasiveness",
                 "how well the response connects with the user's emotions to persuade them to accept the "
                 "recommended movie"),
    "log_pers": ("Logic Persuasiveness",
                 "how well the response uses logical reasoning and coherent arguments to persuade the user to "
                 "accept the recommended movie"),
    "info": ("Informativeness", "how much useful information about the recommended movie the response gives"),
    "life": ("Lifelikeness", "how vivid, natural and human-like the response is"),
}
METRIC_KEYS = tuple(METRICS)
SCORES = tuple(str(d) for d in range(10))
PSEUDONYMS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZ")  # no I or O: they read as digits

SYSTEM = (
    "You are an impartial judge of the responses of movie recommender systems. You read a conversation "
    "between a user and a recommender and several candidate replies of the recommender to the user's latest "
    "message, each under a pseudonym. Score every reply on five metrics, each an integer from 0 (worst) to 9 "
    "(best):\n{definitions}\n"
    "Judge each reply on its own merits; the order of the replies means nothing. Answer with one line per "
    "reply, in the order given: the pseudonym, a colon, and the five scores in the order above separated by "
    "spaces, for example \"{example}\". Write nothing else.")
USER = ("Conversation:\n{history}\n\nThe recommender recommends: {item}\n\nCandidate replies:\n{replies}\n\n"
        "Score each reply ({names}).")


@dataclass(frozen=True)
class Prompt:
    system: str = SYSTEM
    user: str = USER

    @classmethod
    def from_file(cls, path) -> "Prompt":
        """A replacement prompt: a system part and a user part separated by a line ``---``, with the same
        ``{placeholders}``."""
        text = open(path, encoding="utf-8").read()
        if "\n---\n" not in text:
            raise ValueError(f"{path}: a judge prompt file has a system part, a line '---', and a user part")
        system, user = text.split("\n---\n", 1)
        for part, keys in ((system, ("{definitions}", "{example}")),
                           (user, ("{history}", "{item}", "{replies}", "{names}"))):
            missing = [k for k in keys if k not in part]
            if missing:
                raise ValueError(f"{path}: the prompt lacks {', '.join(missing)}")
        return cls(system.strip(), user.strip())


def definitions() -> str:
    return "\n".join(f"{i}. {name}: {text}." for i, (name, text) in enumerate(METRICS.values(), 1))


def shuffle(systems: list[str], *, seed: int, judge: str, dialog_id: str, turn: int, attempt: int) -> list[str]:
    """The systems in the order their replies are shown (pseudonym i names the i-th): a permutation that
    depends only on its arguments, so a rerun shows the same prompt and hits the cache."""
    key = f"{seed}|{judge}|{dialog_id}|{turn}|{attempt}".encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    return [systems[i] for i in rng.permutation(len(systems))]


def answer_constraint(n: int) -> Constraint:
    return Constraint.lines(PSEUDONYMS[:n], SCORES, per_line=len(METRIC_KEYS))


RETRY_NOTE = "\n\n(Attempt {attempt}: answer exactly in the format asked, one line per reply.)"


def build_request(context: dict, order: list[str], replies: dict[str, str], *, prompt: Prompt,
                  constrained: bool, attempt: int = 1) -> Request:
    """One judge request: ``order`` lists the systems as shown (pseudonyms A, B, ...), ``replies`` maps each
    system to its response text. A re-ask (``attempt`` > 1) ends with a numbered note, so it is a new
    request even when the reshuffle happens to show the same order (likely with two or three systems)."""
    if len(order) > len(PSEUDONYMS):
        raise ValueError(f"at most {len(PSEUDONYMS)} systems can be judged together, got {len(order)}")
    names = PSEUDONYMS[:len(order)]
    shown = "\n".join(f"{name}: {' '.join(replies[s].split()) or '(empty reply)'}" for name, s in zip(names, order))
    system = prompt.system.format(definitions=definitions(), example=f"{names[0]}: 5 3 6 2 7")
    user = prompt.user.format(history=context["history"], item=context["item_name"], replies=shown,
                              names=", ".join(names))
    if attempt > 1:
        user += RETRY_NOTE.format(attempt=attempt)
    constraint = answer_constraint(len(order)) if constrained else None
    # a line is "X: d d d d d": about a dozen tokens in the common tokenizers
    return Request((("system", system), ("user", user)), max_tokens=16 * len(order) + 8, constraint=constraint)


def normalise_answer(text: str) -> str:
    """The answer with line endings unified, trailing spaces and blank lines dropped: layout noise that no
    judge means anything by. Everything else must match exactly."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line.strip())


def parse_scores(text: str | None, order: list[str]) -> dict[str, dict[str, int]]:
    """``{system: {metric: score}}`` from an answer to a prompt that showed ``order``;
    :class:`ParseError` when the answer is not exactly one well-formed line per pseudonym, in order."""
    if text is None:
        raise ParseError("", "no answer")
    values = answer_constraint(len(order)).parse(normalise_answer(text))
    k = len(METRIC_KEYS)
    return {system: {m: int(v) for m, v in zip(METRIC_KEYS, values[i * k:(i + 1) * k])}
            for i, system in enumerate(order)}


@dataclass(frozen=True)
class JudgeOptions:
    """One judge's settings: the ``judge`` config section's answer options with the judge's own LLM and seed
    (common.smk: judge_options)."""

    llm: dict  # the judge's backend section, for ecrflow.llm.backend_from_config
    seed: int  # of the pseudonym shuffle
    max_attempts: int  # answers per context before it is left unscored
    constrained: bool  # decode only well-formed answers (local backends)
    batch_size: int
    prompt_file: str | None = None  # a replacement prompt (Prompt.from_file); None: the built-in one


def judge_contexts(contexts: list[dict], replies: dict[str, dict[tuple[str, int], str]], backend, cache, *,
                   judge: str, seed: int, max_attempts: int, batch_size: int, prompt: Prompt,
                   constrained: bool) -> tuple[list[dict], dict]:
    """Score every context's replies; returns long rows (dialog_id, turn, system, metric, score, attempt,
    pseudonym) and a summary with the counts of requests and unparseable answers per attempt.

    ``replies[system][(dialog_id, turn)]`` is each system's response; a context is judged when every
    system has one. A request that fails after the backend's retries raises
    :class:`ecrflow.llm.stage.StageIncomplete` (after every other context was asked): a failure is never a
    score, and a rerun sends only the missing requests."""
    from ..llm.stage import ask_all

    systems = list(replies)
    todo = [c for c in contexts if all((c["dialog_id"], c["turn"]) in replies[s] for s in systems)]
    summary = {"judge": judge, "model": backend.model_id, "systems": systems, "contexts": len(contexts),
               "contexts_missing_a_reply": len(contexts) - len(todo), "attempts": []}

    def order(i: int, attempt: int) -> list[str]:
        c = todo[i]
        return shuffle(systems, seed=seed, judge=judge, dialog_id=c["dialog_id"], turn=c["turn"], attempt=attempt)

    def make_request(i: int, attempt: int) -> Request:
        c = todo[i]
        return build_request(c, order(i, attempt), {s: replies[s][(c["dialog_id"], c["turn"])] for s in systems},
                             prompt=prompt, constrained=constrained, attempt=attempt)

    outcomes = ask_all(backend, cache, len(todo), make_request, lambda i, k, text: parse_scores(text, order(i, k)),
                       max_attempts=max_attempts, batch_size=batch_size, stage=f"judge {judge}")
    rows: list[dict] = []
    for i, (c, o) in enumerate(zip(todo, outcomes)):
        if not o.ok:
            continue
        for pos, system in enumerate(order(i, o.attempt)):
            for metric, score in o.value[system].items():
                rows.append({"dialog_id": c["dialog_id"], "turn": c["turn"], "system": system, "metric": metric,
                             "score": score, "attempt": o.attempt, "pseudonym": PSEUDONYMS[pos]})
    for attempt in range(1, max_attempts + 1):
        steps = [o.steps[attempt] for o in outcomes if attempt in o.steps]
        if not steps:
            break
        summary["attempts"].append({"attempt": attempt, "requests": len(steps), "request_errors": 0,
                                    "unparseable": steps.count("unparseable")})
        log.info("%s attempt %d: %d contexts, %d unparseable answers", judge, attempt, len(steps),
                 steps.count("unparseable"))
    summary["judged"] = len({(r["dialog_id"], r["turn"]) for r in rows})
    summary["unscored_contexts"] = [{"dialog_id": c["dialog_id"], "turn": c["turn"]}
                                    for c, o in zip(todo, outcomes) if not o.ok]
    summary["unparseable_examples"] = [t[:300] for o in outcomes for t in o.unparseable_texts][:5]
    return rows, summary
