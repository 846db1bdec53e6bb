"""A transparent, deterministic judge for the toy run and for tests: it reads the judge prompt like an LLM
would (the recommended item, the replies under their pseudonyms) and answers in the judge's format, with
scores from word counts. It is no judge of quality; it is a stand-in with a learnable signal.

Why it exists: the only LLM that runs offline here, SmolLM2-135M, answers "1 2 3 4 5" for every reply
(measured on the toy sample), which gives the critic a constant target and the RL stage a constant reward,
the failure the earlier project hit. The lexicon judge gives the toy pipeline a text-dependent signal that
goes through the same prompt, pseudonym, parsing and caching code as an LLM judge.

Scores (each clipped to 0-9): emotional intensity from emotion words and exclamations; emotional
persuasiveness from distinct emotion words and naming the item; logic persuasiveness from reason words
and naming the item; informativeness from distinct content words and naming the item; lifelikeness from
length and the share of distinct words.
"""

from __future__ import annotations

import re

from ..llm.base import Backend, Request, Response

REASON_WORDS = {"because", "since", "so", "as", "if", "reason", "why", "plot", "story", "acting", "cast", "director",
                "directed", "stars", "starring", "about", "based", "genre"}
EXTRA_EMOTION_WORDS = {"love", "loved", "great", "amazing", "awesome", "fun", "funny", "scary", "beautiful", "enjoy",
                       "enjoyed", "favorite", "wonderful", "exciting", "hilarious", "touching", "sad", "best",
                       "brilliant", "fantastic", "excellent", "perfect", "masterpiece", "terrible", "boring", "good"}
STOP = {"the", "a", "an", "and", "or", "of", "to", "in", "is", "it", "i", "you", "that", "this", "for", "on", "with",
        "was", "be", "have", "has", "are", "at", "my", "me", "your", "its", "but", "not", "do", "did", "so"}
_WORD = re.compile(r"[a-z']+")
_REPLY = re.compile(r"^([A-Z]): (.*)$", re.M)


def _emotion_words() -> set[str]:
    from ..emotion.mapping import load_mapping

    return set(load_mapping()) | EXTRA_EMOTION_WORDS


def score_reply(text: str, item: str, emotion_words: set[str]) -> list[int]:
    words = _WORD.findall(text.lower())
    title = re.sub(r"\s*\(\d{4}\)\s*$", "", item).lower().strip()
    named = 1 if title and title in text.lower() else 0
    emo = [w for w in words if w in emotion_words]
    content = {w for w in words if w not in STOP and len(w) > 2}
    distinct = len(set(words)) / len(words) if words else 0.0
    length_ok = 1.0 if 8 <= len(words) <= 60 else 0.5 if words else 0.0
    clip = lambda x: int(max(0, min(9, round(x))))  # noqa: E731
    return [clip(2 * len(emo) + text.count("!")),
            clip(2 * len(set(emo)) + 3 * named),
            clip(2 * sum(w in REASON_WORDS for w in words) + 2 * named + (len(words) >= 8)),
            clip(len(content) / 3 + 3 * named),
            clip(9 * distinct * length_ok)]


class LexiconJudge(Backend):
    """Answers judge prompts (the built-in format) with :func:`score_reply` per reply; any other request
    gets an error response, never a guess."""

    model_id = "lexicon-judge-v1"

    def __init__(self, batch_size: int = 1):
        self.emotion_words = _emotion_words()

    def generate(self, requests: list[Request]) -> list[Response]:
        return [self._answer(r) for r in requests]

    def _answer(self, request: Request) -> Response:
        user = request.messages[-1][1]
        item = re.search(r"^The recommender recommends: (.*)$", user, flags=re.M)
        if item is None or "Candidate replies:\n" not in user:
            return Response(None, error="lexicon judge: not a judge prompt of the built-in format")
        block = user.split("Candidate replies:\n", 1)[1].split("\n\n", 1)[0]
        lines = []
        for name, text in _REPLY.findall(block):
            text = "" if text == "(empty reply)" else text
            lines.append(f"{name}: " + " ".join(str(s) for s in score_reply(text, item.group(1), self.emotion_words)))
        return Response("\n".join(lines))
