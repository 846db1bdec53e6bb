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
    scoring: str = "listwise"  # listwise (the paper: greedy digits, all replies in one prompt) | expected


def judged_contexts(contexts: list[dict], replies: dict[str, dict]) -> list[dict]:
    """The contexts every system answered; the calibration rows are not systems: a context without a usable
    human reply is judged without them."""
    from .contexts import CALIBRATION

    required = [s for s in replies if s not in CALIBRATION]
    return [c for c in contexts if all((c["dialog_id"], c["turn"]) in replies[s] for s in required)]


def context_systems(context: dict, replies: dict[str, dict]) -> list[str]:
    """The systems with a reply to this context, in ``replies``' order."""
    key = (context["dialog_id"], context["turn"])
    return [s for s in replies if key in replies[s]]


def attempt_counts(outcomes, max_attempts: int, judge: str) -> list[dict]:
    """Per attempt, the requests sent and the answers that did not parse (a judge summary's ``attempts``)."""
    out = []
    for attempt in range(1, max_attempts + 1):
        steps = [o.steps[attempt] for o in outcomes if attempt in o.steps]
        if not steps:
            break
        out.append({"attempt": attempt, "requests": len(steps), "request_errors": 0,
                    "unparseable": steps.count("unparseable")})
        log.info("%s attempt %d: %d requests, %d unparseable answers", judge, attempt, len(steps),
                 steps.count("unparseable"))
    return out


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
    todo = judged_contexts(contexts, replies)
    summary = {"judge": judge, "model": backend.model_id, "systems": systems, "contexts": len(contexts),
               "contexts_missing_a_reply": len(contexts) - len(todo), "attempts": []}

    def order(i: int, attempt: int) -> list[str]:
        c = todo[i]
        return shuffle(context_systems(c, replies), seed=seed, judge=judge, dialog_id=c["dialog_id"], turn=c["turn"],
                       attempt=attempt)

    def make_request(i: int, attempt: int) -> Request:
        c = todo[i]
        key = (c["dialog_id"], c["turn"])
        return build_request(c, order(i, attempt), {s: replies[s][key] for s in context_systems(c, replies)},
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
    summary["attempts"] = attempt_counts(outcomes, max_attempts, judge)
    summary["judged"] = len({(r["dialog_id"], r["turn"]) for r in rows})
    summary["unscored_contexts"] = [{"dialog_id": c["dialog_id"], "turn": c["turn"]}
                                    for c, o in zip(todo, outcomes) if not o.ok]
    summary["unparseable_examples"] = [t[:300] for o in outcomes for t in o.unparseable_texts][:5]
    return rows, summary


# -- one reply per prompt, the score read from the judge's distribution ----------------------------------------

SCORINGS = ("listwise", "expected")  # every reply in one prompt, greedy digits | one reply and metric a prompt

# The metrics' definitions sit in the system prompt and the question names one metric in a few tokens: on a
# CPU a prompt's cost is the tokens after the prefix its batch shares, and the five questions of a reply are
# its only differences.
POINT_SYSTEM = ("You are an impartial judge of the replies of a movie recommender system. You read a "
                "conversation between a user and a recommender, the movie the recommender recommends, and the "
                "recommender's reply to the user's latest message. You rate the reply on the one quality you "
                "are asked about, with a single digit from 0 (worst) to 9 (best). The qualities:\n{definitions}\n"
                "Write the digit only.")
POINT_USER = ("Conversation:\n{history}\n\nThe recommender recommends: {item}\n\nThe recommender's reply:\n"
              "{reply}\n\nRate the reply's {name} from 0 to 9.")


def point_request(context: dict, reply: str, metric: str, *, attempt: int = 1) -> Request:
    """One judge request per (context, reply, metric): the answer is the distribution over the digits
    (``Request.digits``). The metric comes last, so the five requests of one reply share every token before
    it (a local backend computes that prefix once)."""
    user = POINT_USER.format(history=context["history"], item=context["item_name"],
                             reply=" ".join(reply.split()) or "(empty reply)", name=METRICS[metric][0])
    if attempt > 1:
        user += RETRY_NOTE.format(attempt=attempt).replace("one line per reply", "one digit")
    return Request((("system", POINT_SYSTEM.format(definitions=definitions())), ("user", user)), max_tokens=1,
                   digits=True)


def judge_pointwise(contexts: list[dict], replies: dict[str, dict[tuple[str, int], str]], backend, cache, *,
                    judge: str, max_attempts: int) -> tuple[list[dict], dict]:
    """Score every reply of every context on each metric in its own prompt (G-Eval): ``expected`` is the
    expectation over the digits of the judge's distribution, ``score`` the most probable digit. Rows and
    summary as :func:`judge_contexts`; a context is judged only when every system has a reply, and a
    (reply, metric) whose answers never parse is left out and counted, never scored."""
    from ..llm.digits import parse_digits
    from ..llm.stage import ask_all

    systems = list(replies)
    todo = judged_contexts(contexts, replies)
    items = [(c, s, m) for c in todo for s in context_systems(c, replies) for m in METRIC_KEYS]  # a reply's side by side
    summary = {"judge": judge, "model": backend.model_id, "scoring": "expected", "systems": systems,
               "contexts": len(contexts), "contexts_missing_a_reply": len(contexts) - len(todo),
               "requests": len(items), "attempts": []}

    def make_request(i: int, attempt: int) -> Request:
        c, s, m = items[i]
        return point_request(c, replies[s][(c["dialog_id"], c["turn"])], m, attempt=attempt)

    # One context's requests at a time, so that a local backend's batches (its own batch_size) never mix two
    # contexts and share the system prompt, the history and the item as one cached prefix.
    per_context = len(systems) * len(METRIC_KEYS)
    outcomes = ask_all(backend, cache, len(items), make_request, lambda i, k, text: parse_digits(text),
                       max_attempts=max_attempts, batch_size=per_context, stage=f"judge {judge}")
    rows = [{"dialog_id": c["dialog_id"], "turn": c["turn"], "system": s, "metric": m, "score": o.value.greedy,
             "expected": round(o.value.expected, 6), "digit_mass": round(o.value.mass, 6), "attempt": o.attempt,
             "pseudonym": ""} for (c, s, m), o in zip(items, outcomes) if o.ok]
    summary["attempts"] = attempt_counts(outcomes, max_attempts, judge)
    scored = {(r["dialog_id"], r["turn"]) for r in rows}
    summary["judged"] = len(scored)
    summary["unscored_replies"] = [{"dialog_id": c["dialog_id"], "turn": c["turn"], "system": s, "metric": m}
                                   for (c, s, m), o in zip(items, outcomes) if not o.ok]
    summary["unscored_contexts"] = [{"dialog_id": c["dialog_id"], "turn": c["turn"]} for c in todo
                                    if (c["dialog_id"], c["turn"]) not in scored]
    summary["unparseable_examples"] = [t[:300] for o in outcomes for t in o.unparseable_texts][:5]
    masses = [r["digit_mass"] for r in rows]
    summary["digit_mass_mean"] = round(float(np.mean(masses)), 4) if masses else None
    return rows, summary


def fluency_check(contexts: list[dict], replies: dict[str, dict[tuple[str, int], str]], backend, *,
                  seed: int = 0) -> dict | None:
    """The judge model's own log-likelihood of each reply after its history (a local backend only): per
    system the mean, and how often the human reply is more likely than its shuffled words, with a 95 %
    bootstrap interval. It tells a judge that cannot follow the scoring instruction from a text without
    the signal: the same model reading the same replies. None without the calibration rows or a local
    model."""
    from .contexts import HUMAN, SHUFFLED
    from .tables import bootstrap_ci

    if not hasattr(backend, "reply_logliks") or HUMAN not in replies or SHUFFLED not in replies:
        return None
    keys = [(c["dialog_id"], int(c["turn"])) for c in contexts]
    hist = {(c["dialog_id"], int(c["turn"])): c["history"] for c in contexts}
    pairs = [(s, k) for k in keys for s in replies if k in replies[s]]  # a context's replies side by side
    ll = backend.reply_logliks([(hist[k], replies[s][k]) for s, k in pairs])
    by = {(s, k): v for (s, k), v in zip(pairs, ll)}
    both = [k for k in keys if (HUMAN, k) in by and (SHUFFLED, k) in by]
    wins = [1.0 if by[(HUMAN, k)] > by[(SHUFFLED, k)] else 0.5 if by[(HUMAN, k)] == by[(SHUFFLED, k)] else 0.0
            for k in both]
    lo, hi = bootstrap_ci(wins, seed=seed)
    means = {s: round(float(np.nanmean([by[(s, k)] for k in keys if (s, k) in by])), 4) for s in replies}
    return {"mean_loglik": means, "n": len(wins), "rate": round(float(np.mean(wins)), 4) if wins else None,
            "ci_low": round(lo, 4), "ci_high": round(hi, 4)}
