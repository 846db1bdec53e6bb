"""Generator examples: the knowledge prompt and the target of each training review, and the prompt of each
test recommender turn (ECR_SPEC 4.5 and 5.4), built by the same code so that both sides match.

Every random choice (the template, the sampled entities and triples, the target augmentation) comes from a
generator seeded by the configured seed and the example's key, so the examples are reproducible and do not
depend on the order in which they are built.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..io import read_json
from .knowledge import entity_name
from .prompts import Knowledge, augment_review, fill_movie, sample_down


def keyed_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


class MovieNames:
    """One naming of entities for training and inference: a movie is its ReDial "Title (Year)" when it
    occurs in the dialogues (``items.parquet``), else its DBpedia name; other entities are their
    paren-stripped DBpedia names."""

    def __init__(self, items: pa.Table, entity2id: dict[str, int]):
        self.uri = {i: u for u, i in entity2id.items()}
        self.redial = {e: n for e, n in zip(items.column("entity_id").to_pylist(), items.column("name").to_pylist())
                       if n}

    @classmethod
    def load(cls, items_path, entity2id_path) -> "MovieNames":
        import pyarrow.parquet as pq

        return cls(pq.read_table(items_path), read_json(entity2id_path))

    def movie(self, eid: int) -> str:
        return self.redial.get(eid) or entity_name(self.uri[eid], strip_paren=False)

    def entity(self, eid: int) -> str:
        return entity_name(self.uri[eid], strip_paren=True)


@dataclass(frozen=True)
class KnowledgeOptions:
    n_entities: int  # pn_e
    n_triples: int  # pn_t
    augment_prob: float
    seed: int

    @classmethod
    def from_config(cls, gen: dict) -> "KnowledgeOptions":
        return cls(gen["n_entities"], gen["n_triples"], gen.get("augment_prob", 0.0), gen["seed"])


def _knowledge(names: MovieNames, movie: int, entities: list[int], rel_entities: list[int], relations: list[str],
               first_sentence: str, opts: KnowledgeOptions, rng: np.random.Generator) -> Knowledge:
    name = names.movie(movie)
    ents = [names.entity(e) for e in sample_down(list(entities), opts.n_entities, rng)]
    triples = [(r, names.entity(e)) for e, r in sample_down(list(zip(rel_entities, relations)), opts.n_triples, rng)]
    return Knowledge(name, tuple(dict.fromkeys(ents)), tuple(dict.fromkeys(triples)), fill_movie(first_sentence, name))


def training_example(review: dict, names: MovieNames, templates: list[str], opts: KnowledgeOptions,
                     augment: bool = True) -> tuple[Knowledge, str]:
    """A review row (``knowledge.REVIEW_SCHEMA``) -> (prompt knowledge, target text). The target is the
    review, augmented with triple sentences drawn from *all* of the review's triples (the prompt shows a
    sample of them, as at inference)."""
    rng = keyed_rng(opts.seed, review["review_id"])
    template = templates[int(rng.integers(len(templates)))] if templates else "<movie>"
    if review.get("first_sentence"):  # the dialogue corpus: the turn's own u_r, as at inference
        template = review["first_sentence"]
    k = _knowledge(names, review["movie"], review["entities"], review["relation_entities"], review["relations"],
                   template, opts, rng)
    target = review["content"]
    if augment:
        triples = [(r, names.entity(e)) for e, r in zip(review["relation_entities"], review["relations"])]
        target = augment_review(target, k.movie_name, triples, rng, opts.augment_prob)
    return k, target


def inference_example(dialog_id: str, turn: int, movie: int, first_sentence: str, entities: list[int],
                      neighbours: list[tuple[int, str]], names: MovieNames, opts: KnowledgeOptions) -> Knowledge:
    """A test recommender turn: the predicted movie, its per-movie review entities and its one-hop KG
    triples (both sampled down), and u_r as the first sentence."""
    rng = keyed_rng(opts.seed, f"{dialog_id}/{turn}")
    return _knowledge(names, movie, entities, [e for e, _ in neighbours], [r for _, r in neighbours],
                      first_sentence, opts, rng)
