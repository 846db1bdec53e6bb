"""Scores read from a model's distribution over the digits 0-9 (G-Eval, Liu et al. 2023): the answer to a
:class:`~ecrflow.llm.base.Request` with ``digits=True`` is the probability of each digit at the first answer
token, renormalised over the digits, with the share of the whole distribution the digits held (``mass``).

A judge's score is then the expectation sum_d d p(d), a number that moves with the model's confidence, where
the greedy digit (``argmax p``, kept beside it) often sits on one value for every reply. The answer travels
as JSON text, so the request cache, the resume logic and the breaker treat it as any other answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .constraint import ParseError

DIGITS = tuple(str(d) for d in range(10))
# Below this share of the whole next-token distribution the digits are not the model's answer (it wanted to
# write something else): the answer is unparseable, asked again, and never scored.
MIN_MASS = 1e-4


@dataclass(frozen=True)
class DigitAnswer:
    probs: tuple[float, ...]  # p(0) .. p(9), summing to 1
    mass: float  # the digits' share of the unrenormalised distribution

    @property
    def expected(self) -> float:
        return float(sum(d * p for d, p in enumerate(self.probs)))

    @property
    def greedy(self) -> int:
        return max(range(10), key=lambda d: (self.probs[d], -d))  # ties: the lower digit

    @classmethod
    def from_weights(cls, weights) -> "DigitAnswer":
        """From unnormalised digit probabilities (each digit's summed token probabilities)."""
        w = [float(x) for x in weights]
        if len(w) != 10 or any(x < 0 or math.isnan(x) for x in w):
            raise ValueError(f"digit weights must be 10 non-negative numbers, got {weights!r}")
        total = sum(w)
        probs = tuple(x / total for x in w) if total > 0 else tuple(0.0 for _ in w)
        return cls(probs, total)

    def to_text(self) -> str:
        return json.dumps({"p": [round(p, 6) for p in self.probs], "mass": round(self.mass, 6)})


def parse_digits(text: str | None) -> DigitAnswer:
    """The answer of a ``digits`` request; :class:`ParseError` when it is not one, or when the digits held
    less than :data:`MIN_MASS` of the model's next-token distribution."""
    if text is None:
        raise ParseError("", "no answer")
    try:
        obj = json.loads(text)
        probs, mass = tuple(float(p) for p in obj["p"]), float(obj["mass"])
    except (ValueError, KeyError, TypeError):
        raise ParseError(text, "not a digit distribution") from None
    if len(probs) != 10 or abs(sum(probs) - 1) > 1e-3:
        raise ParseError(text, "not a distribution over the ten digits")
    if mass < MIN_MASS:
        raise ParseError(text, f"the digits hold {mass:.2g} of the answer's first token (< {MIN_MASS:g})")
    return DigitAnswer(probs, mass)


def digit_token_ids(strings: list[str | None]) -> list[list[int]]:
    """For each digit, the vocabulary ids whose text is that digit, with or without leading space (a
    :class:`~ecrflow.llm.constraint.TokenTable`'s ``strings``)."""
    out: list[list[int]] = [[] for _ in DIGITS]
    for tid, s in enumerate(strings):
        if s is not None and s.strip() in DIGITS and len(s.strip()) == 1:
            out[int(s.strip())].append(tid)
    missing = [d for d, ids in enumerate(out) if not ids]
    if missing:
        raise ValueError(f"the tokenizer has no token for the digit(s) {missing}: digit scores cannot be read")
    return out


def from_top_logprobs(top: list[dict]) -> DigitAnswer:
    """From an OpenAI-compatible ``top_logprobs`` list of the first answer token ([{token, logprob}]): the
    digits among them (others count as missing mass)."""
    w = [0.0] * 10
    for entry in top or []:
        tok = str(entry.get("token", "")).strip()
        if len(tok) == 1 and tok in DIGITS:
            w[int(tok)] += math.exp(float(entry["logprob"]))
    return DigitAnswer.from_weights(w)
