"""Zero-shot LLM baselines of Table 2 (paper Section 5.3): an instruction-tuned LLM given the dialogue
history and told to recommend exactly the item ECR predicted there ("only recommend [ITEM]"), greedy
(temperature 0), through the project's LLM backend. The paper's wording is not released; this follows its
description."""

from __future__ import annotations

import logging

from ..llm.base import Request

log = logging.getLogger(__name__)

SYSTEM = ("You are a friendly movie recommender chatting with a user. Reply to the user's latest message in a "
          "few sentences, as the recommender.")
USER = ("Conversation so far:\n{history}\n\nWrite the recommender's next reply. Only recommend the movie "
        "{item}; do not mention any other movie.")


RETRY_NOTE = "\n\n(Attempt {attempt}: write the reply itself, at least one sentence.)"


def baseline_request(context: dict, *, max_tokens: int, attempt: int = 1) -> Request:
    """The prompt of one context; a re-ask after an empty answer adds a numbered reminder, so that it is a
    new request (a deterministic model would repeat itself) with a cache key of its own."""
    user = USER.format(history=context["history"], item=context["item_name"])
    if attempt > 1:
        user += RETRY_NOTE.format(attempt=attempt)
    return Request((("system", SYSTEM), ("user", user)), max_tokens=max_tokens)


def baseline_requests(contexts: list[dict], *, max_tokens: int) -> list[Request]:
    return [baseline_request(c, max_tokens=max_tokens) for c in contexts]


def parse_reply(text: str) -> str:
    """The reply on one line; an empty answer does not count (ValueError), so it is asked again."""
    reply = " ".join(text.split())
    if not reply:
        raise ValueError("an empty reply")
    return reply


def baseline_rows(contexts: list[dict], outcomes) -> tuple[list[dict], dict]:
    """One row per context with the reply (``ecrflow.llm.stage.Outcome`` per context). A context whose
    every attempt answered empty keeps an empty reply, counted in the summary (the model's own answer);
    a failed request is never a reply: there is none here, ask_all raised first."""
    rows = []
    for c, o in zip(contexts, outcomes):
        if o.status not in ("parsed", "unparseable"):
            raise ValueError(f"context {c['dialog_id']}/{c['turn']} has no answer ({o.status}): a failed request "
                             f"is never a reply")
        rows.append({"dialog_id": c["dialog_id"], "turn": c["turn"], "item": c["item"], "item_name": c["item_name"],
                     "response": o.value if o.ok else "", "attempt": o.attempt})
    empty = sum(1 for r in rows if not r["response"])
    return rows, {"contexts": len(rows), "request_errors": 0, "empty_replies": empty,
                  "reasked": sum(1 for o in outcomes if o.attempt > 1)}
