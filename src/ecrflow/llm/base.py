"""The one interface every LLM backend implements, so that the emotion annotator, the LLM judge and the
baselines are written once and run against a local Hugging Face model or an OpenAI-compatible server alike.

A :class:`Request` is a value: its :meth:`Request.key` is a content hash over the backend's model identity
and everything that determines the answer, which is what the disk cache (``cache.py``) is keyed by.
A backend never raises for one failed request: the failure is reported in :attr:`Response.error`, so that
one bad prompt cannot cost the answers of a whole run. It raises :class:`EndpointDown` only when it stops
sending altogether (the HTTP client's circuit breaker), so that a dead endpoint costs minutes, not hours.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator

from .constraint import Constraint

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Request:
    """A chat request: ``messages`` are (role, content) pairs, roles among system/user/assistant."""

    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    constraint: Constraint | None = None
    temperature: float = 0.0
    # True: the answer is the model's distribution over the digits 0-9 at its first answer token (a
    # :class:`DigitAnswer` as JSON text), for scores read as an expectation (G-Eval) instead of a greedy digit.
    digits: bool = False

    def __post_init__(self):
        # Accept lists (e.g. straight from JSON) but store tuples: the request must stay hashable.
        msgs = tuple((str(role), str(content)) for role, content in self.messages)
        if not msgs:
            raise ValueError("a request needs at least one message")
        for role, _ in msgs:
            if role not in ROLES:
                raise ValueError(f"unknown message role {role!r}; expected one of {', '.join(ROLES)}")
        if int(self.max_tokens) < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if float(self.temperature) < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        object.__setattr__(self, "messages", msgs)
        object.__setattr__(self, "max_tokens", int(self.max_tokens))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "digits", bool(self.digits))

    def to_json(self) -> dict:
        out = {"messages": [list(m) for m in self.messages], "max_tokens": self.max_tokens,
               "temperature": self.temperature,
               "constraint": None if self.constraint is None else self.constraint.to_json()}
        if self.digits:  # only when set, so the cache keys of text requests stay what they were
            out["digits"] = True
        return out

    def key(self, model_id: str) -> str:
        """sha256 of a canonical JSON of the model identity and the request: equal iff the answer may be
        reused (same model, same messages, same decoding). Where the model is served (host, port) is not
        part of it: a restarted server on another port answers the same."""
        blob = json.dumps({"model": model_id, "request": self.to_json()}, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class EndpointDown(RuntimeError):
    """The backend gave up on its endpoint (e.g. N consecutive timeouts): no further request is sent. The
    message names the endpoint and why; answers yielded before it was raised are valid."""


@dataclass
class Response:
    """``text`` is the answer (None on failure, then ``error`` says why); ``cached`` marks a disk hit."""

    text: str | None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class Backend(ABC):
    """A text generator behind a chat interface.

    ``model_id`` names everything about the backend that changes answers (model, weights file, decoding
    mode) and nothing secret: it goes into every cache key.
    """

    model_id: str

    @abstractmethod
    def generate(self, requests: list[Request]) -> list[Response]:
        """One response per request, in order; a failed request gives a Response with ``error`` set."""

    def iter_generate(self, requests: list[Request]) -> Iterator[tuple[int, Response]]:
        """Yield (index, response) as answers become available, each index exactly once, in any order.
        Backends that answer concurrently override this so that callers can save each answer on arrival."""
        responses = self.generate(requests)
        if len(responses) != len(requests):
            raise RuntimeError(f"{type(self).__name__}.generate returned {len(responses)} responses "
                               f"for {len(requests)} requests")
        yield from enumerate(responses)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r})"
