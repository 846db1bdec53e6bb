"""The generator rules' steps (called by workflow/scripts), one function per rule of
workflow/rules/generate.smk, named as the rule."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import section
from ..io import iter_jsonl, read_json, write_csv, write_json, write_parquet
from ..train import multi_process
from .knowledge import ReviewKnowledge
from .reviews import ReviewOptions, ReviewProfile

if TYPE_CHECKING:
    from ..models.toy import ToyModelSpec  # imports torch: only where a toy model is built
    from ..train import TrainSettings
    from .generator import GenerationTraining, GeneratorTraining

log = logging.getLogger(__name__)


def toy_llama(pretrain, tokenizer_config, *, config_out, spec: ToyModelSpec | dict, seed: int) -> None:
    """The toy run's stand-in for Llama-2-7B-Chat: a tiny Llama on the toy tokenizer (models.toy)."""
    from ..models.toy import ToyModelSpec, build_toy_llama

    spec = section(ToyModelSpec, spec, "toy.models")
    texts = [t for t in pq.read_table(pretrain, columns=["resp"]).column("resp").to_pylist() if t]
    result = build_toy_llama(texts, Path(tokenizer_config).parent, Path(config_out).parent, hidden=spec.hidden,
                             n_layer=spec.n_layer, n_head=spec.n_head, lm_steps=spec.lm_steps, seed=seed)
    log.info("toy llama: %s", result)


def review_knowledge(reviews, entity2id, relation2id, subkg, items, *, reviews_out, movies_out, report,
                     knowledge: ReviewKnowledge | dict) -> None:
    """Review entities and one-hop triples keyed by entity ids (ECR_SPEC 3.6): movies are found by their
    ReDial name in ``items.parquet``, never by a stripped title."""
    from .knowledge import MOVIE_KNOWLEDGE_SCHEMA, REVIEW_SCHEMA, annotate_reviews, load_stop_words, one_hop

    k = section(ReviewKnowledge, knowledge, "knowledge")
    it = pq.read_table(items, columns=["entity_id", "name"])
    movie_ids = {n: e for e, n in zip(it.column("entity_id").to_pylist(), it.column("name").to_pylist()) if n}
    neighbours = one_hop(read_json(subkg), read_json(relation2id), tuple(k.relations))
    rows, movies, summary = annotate_reviews(
        read_json(reviews), entity2id=read_json(entity2id), movie_ids=movie_ids, neighbours=neighbours,
        stop_words=load_stop_words(k.stop_words), confidence_key=k.confidence,
        min_global_count=k.min_global_count, max_movies_per_entity=k.max_movies_per_entity,
        min_name_length=k.min_name_length, min_movie_count=k.min_movie_count)
    if not rows:
        raise ValueError(f"{reviews}: no review belongs to a movie of the dialogues ({summary})")
    write_parquet(reviews_out, pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA))
    write_parquet(movies_out, pa.Table.from_pylist(movies, schema=MOVIE_KNOWLEDGE_SCHEMA))
    write_json(report, summary)
    log.info("review knowledge: %s", json.dumps(summary))


def filter_reviews(annotated, *, train, valid, report, name: str, profile: ReviewProfile | dict,
                   options: ReviewOptions | dict) -> None:
    """One review profile (ECR_SPEC 3.8): the filters in order, counts per filter, a seeded split."""
    from ..paper import REVIEW_COUNTS
    from .knowledge import REVIEW_SCHEMA
    from .reviews import filter_reviews as run_filters

    opts = section(ReviewOptions, options, "reviews")
    if isinstance(profile, dict):  # one repetition limit for all profiles: reviews.max_repetition
        profile = section(ReviewProfile, {**profile, "max_repetition": opts.max_repetition},
                          f"reviews.profiles.{name}")
    tr, va, summary = run_filters(pq.read_table(annotated).to_pylist(), profile, scrub_words=tuple(opts.scrub_words),
                                  reference_10=opts.scrub_reference_10, valid_fraction=opts.valid_fraction,
                                  seed=opts.seed)
    if not tr:
        raise ValueError(f"no review passes the filters of this profile ({json.dumps(summary)}); relax "
                         f"reviews.profiles in the config")
    summary["paper"] = REVIEW_COUNTS.get(name)  # what the paper kept with this profile, for comparison
    write_parquet(train, pa.Table.from_pylist(tr, schema=REVIEW_SCHEMA))
    write_parquet(valid, pa.Table.from_pylist(va, schema=REVIEW_SCHEMA))
    write_json(report, summary)
    log.info("filtered reviews: %s", json.dumps(summary))


def dialogue_corpus(rec: dict, responses: dict, items, subkg, relation2id, *, train_out, valid_out, movies_out,
                    report, relations: list[str]) -> None:
    """The generator's corpus from the dialogues (generation.corpus: dialogues): generate.dialogues."""
    from .dialogues import DIALOGUE_SCHEMA, MOVIE_KNOWLEDGE_SCHEMA, build_corpus

    rows, movies, summary = build_corpus(rec, responses, items, read_json(subkg), read_json(relation2id), relations)
    if not rows["train"]:
        raise ValueError(f"{rec['train']}: no recommender turn with a movie, a response and a u_r ({summary})")
    write_parquet(train_out, pa.Table.from_pylist(rows["train"], schema=DIALOGUE_SCHEMA))
    write_parquet(valid_out, pa.Table.from_pylist(rows["valid"], schema=DIALOGUE_SCHEMA))
    write_parquet(movies_out, pa.Table.from_pylist(movies, schema=MOVIE_KNOWLEDGE_SCHEMA))
    write_json(report, summary)
    log.info("dialogue corpus: %s", json.dumps(summary))


def first_sentence_templates(responses, *, out, n: int) -> None:
    from .prompts import frequent_templates

    texts = pq.read_table(responses, columns=["resp"]).column("resp").to_pylist()
    templates = frequent_templates(texts, n)
    if not templates:
        raise ValueError(f"{responses}: no response mentions <movie>; the generator needs first-sentence templates")
    write_json(out, templates)
    log.info("%d templates from %d responses; most frequent: %s", len(templates), len(texts), templates[0])


def generate_responses(model_dir, predictions, responses, rec, items, entity2id, relation2id, subkg,
                       movie_knowledge, *, out, stats_out, gen: dict, section: dict, knowledge_relations: list[str],
                       train_cfg: dict) -> None:
    """One trained generator's responses for one split's recommender turns (the stage-2 top item, its
    knowledge, u_r as the first sentence): :func:`ecrflow.generate.generator.infer`."""
    from .generator import infer

    infer(model_dir, predictions, responses, rec, items, entity2id, relation2id, subkg, movie_knowledge, out=out,
          stats_out=stats_out, gen=gen, section=section, knowledge_relations=knowledge_relations,
          train_cfg=train_cfg)


def generation_objective(responses: dict, *, out) -> None:
    """Objective metrics of the generated responses (ECR_SPEC 6.2) against the reference responses: for
    each generator the final response (u_r then u_e) and u_e alone (what the reference scored), and u_r
    alone (the UniCRS response) once. The item ratio counts mentions of the recommended movie."""
    from ..constants import MOVIE_TOKEN
    from .metrics import item_ratio, objective_metrics

    rows = []
    for i, (kind, path) in enumerate(responses.items()):
        recs = [r for _, r in iter_jsonl(path, expected="a response object")]
        if not recs:
            raise ValueError(f"{path}: no responses")
        systems = [(f"ecr_{kind}", "response"), (f"ecr_{kind}", "u_e")]
        if i == 0:
            systems.insert(0, ("unicrs", "u_r"))
        refs = [r["reference"] for r in recs]
        for system, field in systems:
            texts = [r[field] for r in recs]
            m = objective_metrics(texts, refs)
            m["item_ratio"] = item_ratio([t.replace(r["item_name"], MOVIE_TOKEN) for t, r in zip(texts, recs)])
            rows.append({"system": system, "text": field, **m})
    write_csv(out, rows)
    log.info("generation objective: %s", json.dumps(rows))


@multi_process
def generator_train(train, valid, items, entity2id, templates, *, out_dir, metrics_out, work_dir, kind: str,
                    base_model: str, section: GeneratorTraining | dict, gen: GenerationTraining | dict,
                    train_cfg: TrainSettings | dict) -> None:
    """One generator kind (rules generator_train_<kind>) on its review profile:
    :func:`ecrflow.generate.generator.train_generator`."""
    from ..config import section as typed
    from ..train import TrainSettings
    from .generator import GenerationTraining, GeneratorSpec, GeneratorTraining, train_generator

    section = typed(GeneratorTraining, section, f"generator.{kind}")
    train_generator(train, valid, items, entity2id, templates, out_dir=out_dir, metrics_out=metrics_out,
                    work_dir=work_dir, spec=GeneratorSpec.from_config(kind, section, base_model), section=section,
                    gen=typed(GenerationTraining, gen, "generation"), train_cfg=typed(TrainSettings, train_cfg, "train"))
