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


def baseline_requests(contexts: list[dict], *, max_tokens: int) -> list[Request]:
    return [Request((("system", SYSTEM), ("user", USER.format(history=c["history"], item=c["item_name"]))),
                    max_tokens=max_tokens) for c in contexts]


def baseline_rows(contexts: list[dict], answers) -> tuple[list[dict], dict]:
    """One row per context with the reply (empty when the request failed, which the summary counts: an empty
    reply is judged as one, it is not dropped silently)."""
    rows, errors = [], []
    for c, a in zip(contexts, answers):
        text = " ".join((a.text or "").split()) if a.ok else ""
        if not a.ok:
            errors.append({"dialog_id": c["dialog_id"], "turn": c["turn"], "error": a.error})
        rows.append({"dialog_id": c["dialog_id"], "turn": c["turn"], "item": c["item"], "item_name": c["item_name"],
                     "response": text})
    empty = sum(1 for r in rows if not r["response"])
    return rows, {"contexts": len(rows), "request_errors": len(errors), "empty_replies": empty,
                  "errors": errors[:20]}
