"""An OpenAI-compatible chat server (vLLM, a hosted API) as a :class:`Backend`, with nothing but urllib.

Requests run on a small thread pool and are yielded as they complete, so the cache saves each answer on
arrival. Timeouts, connection errors, 429 and 5xx are retried with exponential backoff (at least as long as
a ``Retry-After`` header asks, in seconds or as an HTTP date, up to ``max_retry_wait``); any other 4xx fails
at once. A malformed reply (bad JSON, no ``choices[0].message.content``) is an error response, never an
exception and never a guessed answer. The API key is read from a named environment variable and only ever
sent in the Authorization header: it is kept out of ``model_id``, logs, errors, answers and the cache (an
answer that echoes it has it replaced by ``***``).

Circuit breaker: after ``max_consecutive_failures`` attempts in a row (over all threads) that got no HTTP
answer at all (timeouts, refused or reset connections), the backend stops sending and
:meth:`OpenAIBackend.iter_generate` raises :class:`EndpointDown` naming the endpoint; any HTTP answer, even
a 503, resets the count. ``model_id`` names the model and the guidance mode, not the URL: the cache survives
a server restarted on another host or port.

Structured output (``guided``): ``"vllm"`` sends vLLM's ``structured_outputs`` (``choice`` when the
constraint's choice list is small, else ``regex``), the form of vLLM >= 0.10.2 and the only one since 0.12;
``"vllm-legacy"`` sends the older ``guided_choice`` / ``guided_regex`` fields (vLLM < 0.12); ``"auto"`` is
``"vllm"`` but drops the field for the rest of the run when a server rejects it (a hosted API answers 400
to unknown fields); ``"none"`` never sends one. Answers are parsed strictly either way.
"""

from __future__ import annotations

import concurrent.futures as cf
import email.utils
import http.client
import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Iterator

from .base import Backend, EndpointDown, Request, Response

log = logging.getLogger(__name__)

GUIDED_MODES = ("auto", "vllm", "vllm-legacy", "none")
_GUIDED_FIELDS = ("structured_outputs", "guided_choice", "guided_regex")


class OpenAIBackend(Backend):
    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, timeout: float = 60,
                 max_retries: int = 3, backoff: float = 1.0, guided: str = "auto", concurrency: int = 4,
                 max_consecutive_failures: int = 5, max_retry_wait: float = 300.0):
        if guided not in GUIDED_MODES:
            raise ValueError(f"guided must be one of {', '.join(GUIDED_MODES)}, got {guided!r}")
        if concurrency < 1 or max_retries < 0 or timeout <= 0 or max_consecutive_failures < 0 or max_retry_wait < 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0, timeout > 0, max_consecutive_failures >= 0 "
                             "(0: no circuit breaker) and max_retry_wait >= 0")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.guided = guided
        self.concurrency = int(concurrency)
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.max_retry_wait = float(max_retry_wait)
        self.endpoint = _public_url(base_url)  # for messages only: never part of a cache key
        self._consecutive = 0
        self._down = threading.Event()
        self._down_reason = ""
        self._key: str | None = None
        if api_key_env:
            self._key = os.environ.get(api_key_env)
            if not self._key:
                raise ValueError(f"the API key variable {api_key_env} is not set (or empty)")
        self._guidance_on = guided != "none"
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "attempts": 0, "retries": 0, "errors": 0, "malformed": 0, "redacted": 0}
        self.model_id = f"openai:{model}|guided={guided}"

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.model_id!r} at {self.endpoint})"

    # -- Backend ----------------------------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        for i, resp in self.iter_generate(requests):
            out[i] = resp
        return out  # type: ignore[return-value]

    def iter_generate(self, requests: list[Request]) -> Iterator[tuple[int, Response]]:
        if not requests:
            return
        pool = cf.ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                     thread_name_prefix="llm-http")
        try:
            futures = {pool.submit(self._answer, req): i for i, req in enumerate(requests)}
            for fut in cf.as_completed(futures):
                resp = fut.result()
                if self._down.is_set() and not resp.ok:  # not this request's failure: nothing was sent
                    raise EndpointDown(self._down_reason)
                yield futures[fut], resp
            if self._down.is_set():
                raise EndpointDown(self._down_reason)
        finally:
            # On an interruption, drop what has not started; requests in flight end with their timeout.
            pool.shutdown(wait=False, cancel_futures=True)

    # -- one request ------------------------------------------------------------------------------------------

    def body(self, request: Request, guided: bool = True) -> dict:
        body = {"model": self.model, "messages": [{"role": r, "content": c} for r, c in request.messages],
                "max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.digits:  # the first answer token's distribution (llm.digits); 20 is OpenAI's maximum
            body.update(max_tokens=1, logprobs=True, top_logprobs=20)
        c = request.constraint
        if c is not None and guided and self._guidance_on:
            choices = c.choices()
            if self.guided == "vllm-legacy":
                body.update({"guided_choice": choices} if choices is not None else {"guided_regex": c.to_regex()})
            else:
                body["structured_outputs"] = {"choice": choices} if choices is not None else {"regex": c.to_regex()}
        return body

    def _answer(self, request: Request) -> Response:
        try:
            resp = self._answer_unsafe(request)
        except Exception as e:  # a bug here must still not cost the other answers
            resp = Response(None, error=f"{type(e).__name__}: {e}")
        if resp.error is not None:
            resp.error = self._redact(resp.error)
            self._count("errors")
        return resp

    def _answer_unsafe(self, request: Request) -> Response:
        self._count("requests")
        body = self.body(request)
        last = ""
        attempt = 0
        while True:
            if self._down.is_set():
                return Response(None, error=f"not sent: {self._down_reason}")
            self._count("attempts")
            retry_after = None
            try:
                raw = self._post(body)
            except urllib.error.HTTPError as e:
                self._reachable()
                detail = self._redact(_snippet(_error_body(e)))
                if self._reject_guidance(e.code, detail, body):
                    body = self.body(request, guided=False)
                    continue  # not an attempt at the answer: the server refused the field
                last = f"HTTP {e.code}: {detail}"
                if e.code != 429 and e.code < 500:
                    return Response(None, error=last)
                retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            except (OSError, http.client.HTTPException) as e:  # timeouts, refused/reset connections
                last = self._redact(f"{type(e).__name__}: {getattr(e, 'reason', None) or e}")
                self._unreachable(last)
            else:
                self._reachable()
                return self._parse(raw, digits=request.digits)
            if attempt >= self.max_retries or self._down.is_set():
                return Response(None, error=f"failed after {attempt + 1} attempts: {last}")
            delay = self.backoff * 2 ** attempt
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_retry_wait))
            log.info("%s: attempt %d failed (%s); retrying in %.2f s", self.endpoint, attempt + 1, last, delay)
            self._count("retries")
            attempt += 1
            self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        """Back off; wakes at once when the breaker trips (tests replace this to skip the wait)."""
        self._down.wait(seconds)

    def _reachable(self) -> None:
        with self._lock:
            self._consecutive = 0

    def _unreachable(self, why: str) -> None:
        """One more attempt without any HTTP answer; the N-th in a row trips the breaker."""
        with self._lock:
            self._consecutive += 1
            n = self.max_consecutive_failures
            if n and self._consecutive >= n and not self._down.is_set():
                self._down_reason = (f"the endpoint {self.endpoint} gave no answer to {self._consecutive} "
                                     f"consecutive attempts (timeout {self.timeout:g} s; last: {why}); stopped "
                                     f"sending (llm.http.max_consecutive_failures: {n})")
                self._down.set()
                log.error("%s", self._down_reason)

    def _post(self, body: dict) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "ecrflow"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                     method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return resp.read()

    def _parse(self, raw: bytes, digits: bool = False) -> Response:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._count("malformed")
            return Response(None, error=self._redact(f"malformed JSON in the reply: {_snippet(raw)}"))
        if digits:
            return self._parse_digits(obj, raw)
        try:
            content = obj["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            self._count("malformed")
            return Response(None, error=self._redact(f"the reply has no choices[0].message.content: {_snippet(raw)}"))
        redacted = self._redact(content)
        if redacted != content:  # a server that echoes the request headers: never keep the key
            self._count("redacted")
            log.warning("%s: an answer contained the API key; it is stored as ***", self.endpoint)
        return Response(redacted.strip())

    def _parse_digits(self, obj, raw: bytes) -> Response:
        from .digits import from_top_logprobs

        try:
            top = obj["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError):
            top = None
        if not isinstance(top, list):
            self._count("malformed")
            return Response(None, error=self._redact(
                "the reply has no choices[0].logprobs.content[0].top_logprobs: this judge reads scores from the "
                f"token distribution (judge.scoring: expected), which needs a server with logprobs: {_snippet(raw)}"))
        return Response(from_top_logprobs(top).to_text())

    def _reject_guidance(self, status: int, detail: str, body: dict) -> bool:
        """In auto mode, a 400/422 that names the guidance field turns guidance off for the rest of the run."""
        if self.guided != "auto" or status not in (400, 422) or not any(f in body for f in _GUIDED_FIELDS):
            return False
        if not any(f in detail for f in _GUIDED_FIELDS):
            return False
        with self._lock:
            if self._guidance_on:
                self._guidance_on = False
                log.warning("%s: the server rejected structured-output fields; continuing without them "
                            "(answers are still parsed strictly)", self.model_id)
        return True

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _public_url(url: str) -> str:
    """The URL without credentials, query or fragment (they never belong in a cache key)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _snippet(raw: bytes, limit: int = 300) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _error_body(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read() if err.fp is not None else b""
    except (OSError, http.client.HTTPException):
        return b""


def _retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110 10.2.3);
    None when absent or unreadable, 0 for a date in the past."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
