"""The data rules' steps (called by workflow/scripts), one function per rule of workflow/rules/data.smk,
named as the rule: the toy dataset, the raw-folder check, the processed samples, the items, u_r."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pyarrow.parquet as pq

from ..config import section
from ..io import write_json, write_parquet
from .toy import ToyConfig
from .turns import EmotionRule

log = logging.getLogger(__name__)


def toy_data(out_dir, *, toy: ToyConfig | dict, dialog_pattern: str, reviews: str | None,
             with_emotions: bool) -> None:
    from .toy import generate

    cfg = dataclasses.replace(section(ToyConfig, toy, "toy"), with_emotions=with_emotions,
                              dialog_pattern=dialog_pattern, reviews_file=reviews or "")
    summary = generate(out_dir, cfg)
    log.info("toy data: %s", summary)


def validate_input(raw_dir, report_path, *, dialog_pattern: str, require_emotion: bool, unknown_entities: str,
                   reviews: str | None, split_overlap: str = "error") -> None:
    from .validate import validate_raw

    report = validate_raw(raw_dir, dialog_pattern=dialog_pattern, require_emotion=require_emotion,
                          unknown_entities=unknown_entities, reviews=reviews, split_overlap=split_overlap)
    for split, s in report["splits"].items():
        warnings = {k: v for k, v in s["counts"].items() if k not in ("dialogs", "messages") and v}
        log.info("%s: %d dialogs, %d messages; counted warnings: %s", split, s["counts"]["dialogs"],
                 s["counts"]["messages"], warnings or "none")
    write_json(report_path, report)


def process_split(dialog_file, entity2id_path, *, pretrain, rec, sequences, stats, emotion: EmotionRule | dict,
                  require_emotion: bool, emotions: str = "dataset") -> None:
    """``emotions``: the data.emotions setting (dataset | pipeline | none), named in the errors."""
    from ..kg import load_id_map
    from .process import process_split as build
    from .process import split_summary
    from .redial import ReadStats

    entity2id = load_id_map(entity2id_path, "entity")
    read_stats = ReadStats()
    tables = build(dialog_file, entity2id, section(EmotionRule, emotion, "emotion"),
                   require_emotion=require_emotion, stats=read_stats, emotion_source=emotions)
    write_parquet(pretrain, tables["pretrain"])
    write_parquet(rec, tables["rec"])
    write_parquet(sequences, tables["sequences"])
    summary = split_summary(tables, read_stats)
    write_json(stats, summary)
    log.info("%s: %s", Path(dialog_file).name, summary)


def items(sequences: dict, train_rec, entity2id_path, *, item_ids_out, items_out) -> None:
    from ..kg import load_id_map
    from .items import build_items

    table = build_items({s: pq.read_table(p) for s, p in sequences.items()}, pq.read_table(train_rec),
                        load_id_map(entity2id_path, "entity"))
    write_parquet(items_out, table)
    write_json(item_ids_out, table.column("entity_id").to_pylist(), indent=None)
    log.info("%d items", table.num_rows)


def unicrs_responses(responses_file, rec, *, out, stats) -> None:
    from .responses import read_unicrs_responses

    table, counts = read_unicrs_responses(responses_file, pq.read_table(rec))
    write_parquet(out, table)
    write_json(stats, counts)
    if counts["label_mismatches"]:
        log.warning("%d of %d labels differ from the gold responses: check that the file matches this split",
                    counts["label_mismatches"], counts["responses"])
    log.info("u_r: %s", counts)
