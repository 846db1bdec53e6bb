"""The table rules' steps (called by workflow/scripts), one function per rule of workflow/rules/tables.smk,
named as the rule."""

from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq

from ..constants import SPLITS
from ..io import read_json, write_csv

log = logging.getLogger(__name__)


def dataset_stats(validation, split_stats: dict, kg_meta, items_path, *, out) -> None:
    """One row per split: dialogue and turn counts, feedback shares, counted warnings, KG and item sizes."""
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


def baselines(train_rec, test_rec, item_ids, matrix, contributions, kg_tensors, *, out, ks) -> None:
    """The non-neural recommenders (popularity, co-occurrence, KG walk) on the test turns
    (:mod:`ecrflow.baselines`)."""
    from ..baselines import evaluate_baselines
    from ..cooccurrence import CoOccurrence
    from ..kg import load_kg_tensors
    from ..kg.neighbourhood import KGNeighbourhood

    items = read_json(item_ids)
    edge_index, _, meta = load_kg_tensors(kg_tensors)
    rows = evaluate_baselines(pq.read_table(train_rec), pq.read_table(test_rec), items,
                              CoOccurrence.load(matrix, contributions), ks=tuple(ks),
                              kg=KGNeighbourhood(edge_index.numpy(), meta["n_entity"], items))
    write_csv(out, rows)
    log.info("baselines: %s", json.dumps(rows))
