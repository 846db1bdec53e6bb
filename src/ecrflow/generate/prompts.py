"""The knowledge prompt of the emotion-aligned generator (ECR_SPEC 4.5, 4.6), one format for training and
inference.

    Movie Name: <name>
    Related Entities: <e1, e2, ...> | None
    Related Knowledge from KG: <name's relation is X, ...> | None
    First Sentence: <u_r, or a response template at training time, with <movie> replaced by the name>

Fixes of the reference's train/inference mismatches (ECR_SPEC 8.18): the movie is always named by the same
function of its entity id (``MovieNames``: the ReDial "Title (Year)" when the movie occurs in the dialogues,
else its DBpedia name); entity names are always paren-stripped; entities and triples are sampled down to
``n_entities`` (pn_e) and ``n_triples`` (pn_t) at training *and* inference, from the review's own knowledge
at training time and from the movie's knowledge (per-movie review entities, one-hop KG triples) at inference.
The first sentence is a frequent u_r template at training time (the reference's ``common_template.json``,
rebuilt from this workflow's own responses) and the real u_r at inference.

Two renderings of the same lines: ``plain`` (DialoGPT: lines joined by the end-of-text token, the prompt
followed by it) and ``chat`` (Llama-2-Chat: the model's chat template with the fixed instruction as the
system message and the lines, newline-joined, as the user message).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..constants import MOVIE_TOKEN

INSTRUCTION = ("You are a movie recommender; continue from the First Sentence using Movie Name / Related "
               "Entities / Related Knowledge from KG.")
KNOWLEDGE_MODES = ("full", "none", "no_triples")  # full | --wk (name and first sentence only) | --wt
_SUBJECTS = ("This movie", "It", "This film", None, "The movie", "The film")  # None: the title without year
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def title_without_year(name: str) -> str:
    return _YEAR.sub("", name).strip()


def fill_movie(text: str, name: str) -> str:
    return text.replace(MOVIE_TOKEN, name)


def triple_text(movie: str, relation: str, neighbour: str) -> str:
    return f"{movie}'s {relation} is {neighbour}"


@dataclass(frozen=True)
class Knowledge:
    movie_name: str
    entities: tuple[str, ...]  # names, paren-stripped
    triples: tuple[tuple[str, str], ...]  # (relation, neighbour name)
    first_sentence: str


def prompt_lines(k: Knowledge, mode: str = "full") -> list[str]:
    if mode not in KNOWLEDGE_MODES:
        raise ValueError(f"knowledge mode must be one of {KNOWLEDGE_MODES}, not {mode!r}")
    lines = [f"Movie Name: {k.movie_name}"]
    if mode != "none":
        entities = list(k.entities)
        if mode == "no_triples":  # the --wt ablation: triple tails join the entities, no triple line
            entities += [n for _, n in k.triples if n not in entities]
        lines.append(f"Related Entities: {', '.join(entities) if entities else 'None'}")
        if mode == "full":
            kg = [triple_text(k.movie_name, r, n) for r, n in k.triples]
            lines.append(f"Related Knowledge from KG: {', '.join(kg) if kg else 'None'}")
    lines.append(f"First Sentence: {k.first_sentence}")
    return lines


def sample_down(items: list, n: int, rng: np.random.Generator) -> list:
    """At most ``n`` items, drawn without replacement, kept in their original order."""
    if len(items) <= n:
        return list(items)
    keep = sorted(rng.choice(len(items), size=n, replace=False).tolist())
    return [items[i] for i in keep]


def split_sentences(text: str) -> list[str]:
    """Sentences with their closing punctuation (the unit the triple sentences are inserted between)."""
    parts = [p.strip() for p in re.findall(r"[^.?!]+[.?!]*", text)]
    return [p for p in parts if p]


def augment_review(text: str, movie_name: str, triples: list[tuple[str, str]], rng: np.random.Generator,
                   prob: float = 0.1) -> str:
    """The reference's target augmentation (ECR_SPEC 4.5): each triple, with probability ``prob``, becomes a
    sentence "M's R is X." before the first sentence that mentions X; insertions at one position with the
    same relation are merged ("... is X and Y."). M is the title at the start of the text, else one of the
    reference's subjects. Where no sentence mentions X the sentence goes at the end (the reference's
    off-by-one put it before the last sentence, ECR_SPEC 8.17)."""
    if prob <= 0 or not triples:
        return text
    pieces = split_sentences(text)
    inserts: dict[int, dict[str, list[str]]] = {}
    for relation, neighbour in triples:
        if rng.random() >= prob:
            continue
        pos = next((i for i, p in enumerate(pieces) if neighbour.lower() in p.lower()), len(pieces))
        inserts.setdefault(pos, {}).setdefault(relation, []).append(neighbour)
    if not inserts:
        return text
    out: list[str] = []
    for i in range(len(pieces) + 1):
        for relation, names in inserts.get(i, {}).items():
            subject = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))] if i > 0 else None
            subject = subject or title_without_year(movie_name)
            out.append(triple_text(subject, relation, " and ".join(names)) + ".")
        if i < len(pieces):
            out.append(pieces[i])
    return " ".join(out)


def frequent_templates(responses: list[str], n: int) -> list[dict]:
    """The ``n`` most frequent responses that mention ``<movie>`` (ties alphabetical): the stand-in for the
    reference's unshipped ``common_template.json`` (ECR_SPEC 1.3, 8.26)."""
    counts = Counter(r.strip() for r in responses if r and MOVIE_TOKEN in r)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{"text": t, "count": c} for t, c in ranked]


def render(tokenizer, lines: list[str], fmt: str) -> str:
    """The prompt text in the generator's format, ending where the generated text starts."""
    if fmt == "plain":
        eos = tokenizer.eos_token
        return eos.join(lines) + eos
    if fmt == "chat":
        user = "\n".join(lines)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": user}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # No template (a base model): the Alpaca layout the reference's LLaMA-Factory data used.
        return f"### Instruction:\n{INSTRUCTION}\n\n### Input:\n{user}\n\n### Response:\n"
    raise ValueError(f"prompt format must be plain or chat, not {fmt!r}")
