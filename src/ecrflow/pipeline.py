"""What each workflow rule does, one function per rule, with explicit paths and parameters.

The scripts under ``workflow/scripts/`` only unpack the Snakemake object and call these; tests call them
directly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq

from .constants import SPLITS
from .io import iter_jsonl, read_json, write_csv, write_json, write_jsonl, write_parquet

log = logging.getLogger(__name__)


def toy_data(out_dir, *, toy: dict, dialog_pattern: str, reviews: str | None, with_emotions: bool) -> None:
    from .data.toy import ToyConfig, generate

    cfg = ToyConfig(seed=toy["seed"], n_dialogs=dict(toy["n_dialogs"]), n_movies=toy["n_movies"],
                    actors_per_genre=toy["actors_per_genre"], max_reviews_per_movie=toy["max_reviews_per_movie"],
                    with_emotions=with_emotions, dialog_pattern=dialog_pattern, reviews_file=reviews or "")
    summary = generate(out_dir, cfg)
    log.info("toy data: %s", summary)


def validate_input(raw_dir, report_path, *, dialog_pattern: str, require_emotion: bool, unknown_entities: str,
                   reviews: str | None) -> None:
    from .data.validate import validate_raw

    report = validate_raw(raw_dir, dialog_pattern=dialog_pattern, require_emotion=require_emotion,
                          unknown_entities=unknown_entities, reviews=reviews)
    for split, s in report["splits"].items():
        warnings = {k: v for k, v in s["counts"].items() if k not in ("dialogs", "messages")}
        log.info("%s: %d dialogs, %d messages; counted warnings: %s", split, s["counts"]["dialogs"],
                 s["counts"]["messages"], warnings or "none")
    write_json(report_path, report)


def process_split(dialog_file, entity2id_path, *, pretrain, rec, sequences, stats, emotion: dict,
                  require_emotion: bool) -> None:
    from .data.process import process_split as build
    from .data.redial import ReadStats
    from .data.turns import EmotionRule
    from .kg import load_id_map

    entity2id = load_id_map(entity2id_path, "entity")
    rule = EmotionRule(threshold=emotion["threshold"], fallback_top1=emotion["fallback_top1"],
                       turn_merge=emotion["turn_merge"])
    read_stats = ReadStats()
    tables = build(dialog_file, entity2id, rule, require_emotion=require_emotion, stats=read_stats)
    write_parquet(pretrain, tables["pretrain"])
    write_parquet(rec, tables["rec"])
    write_parquet(sequences, tables["sequences"])
    rec_rows = tables["rec"].select(["rec_feedback", "next_emotions"]).to_pylist()
    feedback = {k: 0 for k in ("like", "dislike", "not_said")}
    for r in rec_rows:
        for f in r["rec_feedback"]:
            feedback[f] += 1
    summary = {
        "dialogs": tables["sequences"].num_rows,
        "turns": tables["pretrain"].num_rows,
        "recommender_turns": tables["rec"].num_rows,
        "rec_items": sum(feedback.values()),
        "feedback": feedback,
        "counts": dict(read_stats.counts),
    }
    write_json(stats, summary)
    log.info("%s: %s", Path(dialog_file).name, summary)


def kg_tensors(entity2id, relation2id, subkg, *, tensors, meta, entity2id_out, relation2id_out, reverse: str) -> None:
    from .kg import load_kg, save_kg_tensors

    kg, entity2id, relation2id = load_kg(entity2id, relation2id, subkg, reverse=reverse)
    save_kg_tensors(tensors, kg)
    write_json(entity2id_out, entity2id, indent=None)
    write_json(relation2id_out, relation2id)
    write_json(meta, {"n_entity": kg.n_entity, "pad_entity": kg.pad_entity, "n_relation": kg.n_relation,
                      "relations": kg.relations, "n_triples": kg.n_triples,
                      "n_edges": int(kg.edge_index.shape[1]), "reverse": reverse})


def items(sequences: dict, train_rec, entity2id_path, *, item_ids_out, items_out) -> None:
    from .data.items import build_items
    from .kg import load_id_map

    table = build_items({s: pq.read_table(p) for s, p in sequences.items()}, pq.read_table(train_rec),
                        load_id_map(entity2id_path, "entity"))
    write_parquet(items_out, table)
    write_json(item_ids_out, table.column("entity_id").to_pylist(), indent=None)
    log.info("%d items", table.num_rows)


def cooccurrence(train_sequences, entity2id_path, *, matrix, contributions, stats, top_n: int) -> None:
    from .cooccurrence import count_cooccurrence, save_counts
    from .kg import load_id_map

    n_entity = max(load_id_map(entity2id_path, "entity").values()) + 2  # as the KG: the last id pads
    result = count_cooccurrence(pq.read_table(train_sequences), n_entity, top_n=top_n)
    save_counts(matrix, contributions, result)
    nnz_rows = int((result.counts.getnnz(axis=1) > 0).sum())
    summary = {"n_entity": n_entity, "nnz": int(result.counts.nnz), "pairs": int(result.counts.sum()),
               "rows_with_pairs": nnz_rows, "top_n_labels": top_n}
    write_json(stats, summary)
    log.info("co-occurrence: %s", summary)


def baselines_table(train_rec, test_rec, item_ids, matrix, contributions, *, out, ks) -> None:
    from .baselines import evaluate_baselines
    from .cooccurrence import CoOccurrence

    rows = evaluate_baselines(pq.read_table(train_rec), pq.read_table(test_rec), read_json(item_ids),
                              CoOccurrence.load(matrix, contributions), ks=tuple(ks))
    write_csv(out, rows)
    log.info("baselines: %s", json.dumps(rows))


def dataset_stats_table(validation, split_stats: dict, kg_meta, items_path, *, out) -> None:
    report = read_json(validation)
    meta = read_json(kg_meta)
    n_items = pq.read_metadata(items_path).num_rows
    rows = []
    for split in SPLITS:
        s = read_json(split_stats[split])
        v = report["splits"][split]
        n_fb = max(s["rec_items"], 1)
        rows.append({
            "split": split,
            "dialogs": s["dialogs"],
            "messages": v["counts"]["messages"],
            "turns": s["turns"],
            "recommender_turns": s["recommender_turns"],
            "rec_items": s["rec_items"],
            "like_share": s["feedback"]["like"] / n_fb,
            "dislike_share": s["feedback"]["dislike"] / n_fb,
            "not_said_share": s["feedback"]["not_said"] / n_fb,
            "seeker_messages_with_emotion": v["seeker_messages_with_emotion"],
            "empty_dialogs_skipped": v["counts"].get("empty_dialogs_skipped", 0),
            "unknown_uris_dropped": v["counts"].get("unknown_entity_uris", 0),
            "entities": meta["n_entity"] - 1,
            "relations": meta["n_relation"],
            "kg_edges": meta["n_edges"],
            "items": n_items,
        })
    write_csv(out, rows)


def unicrs_responses(responses_file, rec, *, out, stats) -> None:
    from .data.responses import read_unicrs_responses

    table, counts = read_unicrs_responses(responses_file, pq.read_table(rec))
    write_parquet(out, table)
    write_json(stats, counts)
    if counts["label_mismatches"]:
        log.warning("%d of %d labels differ from the gold responses: check that the file matches this split",
                    counts["label_mismatches"], counts["responses"])
    log.info("u_r: %s", counts)


def toy_models(pretrain, rec, *, lm_config, encoder_config, summary, spec: dict, seed: int) -> None:
    """The toy run's tokenizer, tiny GPT-2 and tiny RoBERTa (models.toy), trained/built from the training
    dialogues; the rule's outputs are the two config.json files (their folders are the model paths)."""
    from .models.toy import build_toy_models

    texts = pq.read_table(pretrain, columns=["resp"]).column("resp").to_pylist()
    texts += pq.read_table(rec, columns=["resp"]).column("resp").to_pylist()  # masked: teaches <movie>
    result = build_toy_models([t for t in texts if t], Path(lm_config).parent, Path(encoder_config).parent,
                              vocab_size=spec["vocab_size"], hidden=spec["hidden"], n_layer=spec["n_layer"],
                              n_head=spec["n_head"], lm_steps=spec["lm_steps"], seed=seed)
    write_json(summary, result)
    log.info("toy models: %s", result)


def data_fingerprint(paths: list) -> str:
    """One hash over the content hashes of the given files."""
    import hashlib

    from .io import sha256_file

    h = hashlib.sha256()
    for p in paths:
        h.update(f"{Path(p).name}:{sha256_file(p)}\n".encode())
    return h.hexdigest()[:16]


def rec_table(name: str, predictions: dict, fingerprint_files: list, *, out, provenance, ks, auc_batch_size: int,
              config: dict) -> None:
    """Table 1 or 3 from stage-2 test predictions, with a sibling provenance file (config hash, data
    fingerprint, the paper's numbers, the AUC protocol)."""
    from .config import config_hash
    from .paper import COLUMNS, PAPER, PROTOCOL
    from .recommend.stages import metrics_from_predictions

    rows, full = [], {}
    for variant, path in predictions.items():
        m = metrics_from_predictions(path, ks=ks, auc_batch_size=auc_batch_size)
        full[variant] = m
        named = {"AUC": m["auc"], "AUC_global": m["auc_global"]}
        for k in ks:
            named[f"RT@{k}"] = m[f"recall_true@{k}"]
            named[f"R@{k}"] = m[f"recall@{k}"]
        row = {"model": variant, **{c: named[c] for c in COLUMNS[name] if c in named}}
        row.update({"MRR@10": m.get("mrr@10", float("nan")), "NDCG@10": m.get("ndcg@10", float("nan")),
                    "samples": m["samples"], "auc_batches": m["auc_batches"],
                    "auc_batches_skipped": m["auc_batches_skipped"]})
        rows.append(row)
    write_csv(out, rows)
    write_json(provenance, {
        "table": name,
        "config_hash": config_hash(config),
        "data_fingerprint": data_fingerprint(fingerprint_files),
        "data_files": [str(p) for p in fingerprint_files],
        "toy": bool(config["toy"]["enabled"]),
        "protocol": PROTOCOL.format(auc_batch_size=auc_batch_size),
        "variants": {v: config["variants"]["recommend"][v] for v in predictions},
        "metrics": full,
        "paper": PAPER[name],
    })
    log.info("%s: %s", name, json.dumps(rows))


# -- the generator ------------------------------------------------------------------------------------------------

def toy_llama(pretrain, tokenizer_config, *, config_out, spec: dict, seed: int) -> None:
    """The toy run's stand-in for Llama-2-7B-Chat: a tiny Llama on the toy tokenizer (models.toy)."""
    from .models.toy import build_toy_llama

    texts = [t for t in pq.read_table(pretrain, columns=["resp"]).column("resp").to_pylist() if t]
    result = build_toy_llama(texts, Path(tokenizer_config).parent, Path(config_out).parent, hidden=spec["hidden"],
                             n_layer=spec["n_layer"], n_head=spec["n_head"], lm_steps=spec["lm_steps"], seed=seed)
    log.info("toy llama: %s", result)


def toy_emotion_lm(dialogs, *, config_out, spec: dict, seed: int) -> None:
    """The toy run's base for the emotion classifier: a tiny GPT-2 on the raw dialogue texts (models.toy)."""
    from .emotion.annotate import clean_text
    from .models.toy import build_toy_gpt2

    texts = [clean_text(m.get("text", "")) for _, d in iter_jsonl(dialogs, expected="a ReDial conversation object")
             for m in d.get("messages", [])]
    result = build_toy_gpt2([t for t in texts if t], Path(config_out).parent, vocab_size=spec["vocab_size"],
                            hidden=spec["hidden"], n_layer=spec["n_layer"], n_head=spec["n_head"],
                            lm_steps=spec["lm_steps"], seed=seed)
    log.info("toy emotion LM: %s", result)


def first_sentence_templates(responses, *, out, n: int) -> None:
    from .generate.prompts import frequent_templates

    texts = pq.read_table(responses, columns=["resp"]).column("resp").to_pylist()
    templates = frequent_templates(texts, n)
    if not templates:
        raise ValueError(f"{responses}: no response mentions <movie>; the generator needs first-sentence templates")
    write_json(out, templates)
    log.info("%d templates from %d responses; most frequent: %s", len(templates), len(texts), templates[0])


def generation_objective(responses: dict, *, out) -> None:
    """Objective metrics of the generated responses (ECR_SPEC 6.2) against the reference responses: for
    each generator the final response (u_r then u_e) and u_e alone (what the reference scored), and u_r
    alone (the UniCRS response) once. The item ratio counts mentions of the recommended movie."""
    from .constants import MOVIE_TOKEN
    from .generate.metrics import item_ratio, objective_metrics

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


def _stop_words(path) -> set[str]:
    """One word per line (lower-cased); ``None`` reads the list shipped with ecrflow (English function words
    plus "movie", "film" and the like: the reference's stop_words.txt was never published, ECR_SPEC 8.26)."""
    if path is None:
        from importlib.resources import files

        text = files("ecrflow.generate").joinpath("stop_words.txt").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return {w.strip().lower() for w in text.splitlines() if w.strip()}


def review_knowledge(reviews, entity2id, relation2id, subkg, items, *, reviews_out, movies_out, report,
                     knowledge: dict) -> None:
    """Review entities and one-hop triples keyed by entity ids (ECR_SPEC 3.6): movies are found by their
    ReDial name in ``items.parquet``, never by a stripped title."""
    import pyarrow as pa

    from .generate.knowledge import MOVIE_KNOWLEDGE_SCHEMA, REVIEW_SCHEMA, annotate_reviews, one_hop

    it = pq.read_table(items, columns=["entity_id", "name"])
    movie_ids = {n: e for e, n in zip(it.column("entity_id").to_pylist(), it.column("name").to_pylist()) if n}
    neighbours = one_hop(read_json(subkg), read_json(relation2id), tuple(knowledge["relations"]))
    rows, movies, summary = annotate_reviews(
        read_json(reviews), entity2id=read_json(entity2id), movie_ids=movie_ids, neighbours=neighbours,
        stop_words=_stop_words(knowledge["stop_words"]), confidence_key=knowledge["confidence"],
        min_global_count=knowledge["min_global_count"], max_movies_per_entity=knowledge["max_movies_per_entity"],
        min_name_length=knowledge["min_name_length"], min_movie_count=knowledge["min_movie_count"])
    if not rows:
        raise ValueError(f"{reviews}: no review belongs to a movie of the dialogues ({summary})")
    write_parquet(reviews_out, pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA))
    write_parquet(movies_out, pa.Table.from_pylist(movies, schema=MOVIE_KNOWLEDGE_SCHEMA))
    write_json(report, summary)
    log.info("review knowledge: %s", json.dumps(summary))


def filter_reviews(annotated, *, train, valid, report, name: str, profile: dict, options: dict) -> None:
    """One review profile (ECR_SPEC 3.8): the filters in order, counts per filter, a seeded split."""
    import pyarrow as pa

    from .generate.knowledge import REVIEW_SCHEMA
    from .generate.reviews import ReviewProfile
    from .generate.reviews import filter_reviews as run_filters

    prof = ReviewProfile(min_votes=profile["min_votes"], min_words=profile["min_words"],
                         max_words=profile["max_words"], min_first_person=profile["min_first_person"],
                         max_repetition=options["max_repetition"])
    tr, va, summary = run_filters(pq.read_table(annotated).to_pylist(), prof, scrub_words=tuple(options["scrub_words"]),
                                  reference_10=options["scrub_reference_10"], valid_fraction=options["valid_fraction"],
                                  seed=options["seed"])
    if not tr:
        raise ValueError(f"no review passes the filters of this profile ({json.dumps(summary)}); relax "
                         f"reviews.profiles in the config")
    from .paper import REVIEW_COUNTS

    summary["paper"] = REVIEW_COUNTS.get(name)  # what the paper kept with this profile, for comparison
    write_parquet(train, pa.Table.from_pylist(tr, schema=REVIEW_SCHEMA))
    write_parquet(valid, pa.Table.from_pylist(va, schema=REVIEW_SCHEMA))
    write_json(report, summary)
    log.info("filtered reviews: %s", json.dumps(summary))


# -- emotion labels made by the pipeline --------------------------------------------------------------------------

def emotion_annotate(dialogs, *, annotations_out, summary_out, cache_dir, llm: dict, options: dict) -> None:
    """LLM annotation of a seeded sample of seeker utterances (paper App. A.1), answers cached on disk so a
    killed job resumes; parse failures and unmapped words are counted in the summary, never guessed."""
    from .emotion.annotate import requests, sample, seeker_utterances, summarise
    from .emotion.mapping import load_mapping
    from .llm import backend_from_config
    from .llm.cache import RequestCache, run_cached

    rows = sample(seeker_utterances(dialogs, max_history=options["max_history"]), options["utterances"],
                  options["seed"])
    table = load_mapping()
    backend = backend_from_config(llm, options["batch_size"])
    with RequestCache(cache_dir) as cache:
        answers = run_cached(backend, requests(rows, list(table), constrained=options["constrained"]), cache,
                             batch_size=options["batch_size"])
    out, summary = summarise(rows, answers, table)
    summary["llm"] = backend.model_id
    if not summary["labelled"]:
        raise ValueError(f"no annotator answer gave a known emotion word ({json.dumps(summary)})")
    write_jsonl(annotations_out, out)
    write_json(summary_out, summary)
    log.info("emotion annotation: %s", json.dumps(summary))
