"""The recommender rules' steps (called by workflow/scripts), one function per rule of
workflow/rules/recommend.smk, named as the rule."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from ..config import section
from ..io import write_csv, write_json
from ..train import multi_process

if TYPE_CHECKING:
    from ..models.toy import ToyModelSpec  # imports torch: only where a toy model is built
    from ..train import TrainSettings
    from .training import (BaseModels, ConversationSettings, ConversationTraining, PromptSettings, RecommendSettings,
                           RecommendTraining, Variant)

log = logging.getLogger(__name__)


def toy_models(pretrain, rec, *, lm_config, encoder_config, summary, spec: ToyModelSpec | dict, seed: int) -> None:
    """The toy run's tokenizer, tiny GPT-2 and tiny RoBERTa (models.toy), trained/built from the training
    dialogues; the rule's outputs are the two config.json files (their folders are the model paths)."""
    from ..models.toy import ToyModelSpec, build_toy_models

    spec = section(ToyModelSpec, spec, "toy.models")
    texts = pq.read_table(pretrain, columns=["resp"]).column("resp").to_pylist()
    texts += pq.read_table(rec, columns=["resp"]).column("resp").to_pylist()  # masked: teaches <movie>
    result = build_toy_models([t for t in texts if t], Path(lm_config).parent, Path(encoder_config).parent,
                              vocab_size=spec.vocab_size, hidden=spec.hidden, n_layer=spec.n_layer,
                              n_head=spec.n_head, lm_steps=spec.lm_steps, seed=seed)
    write_json(summary, result)
    log.info("toy models: %s", result)


SUMMARY_ROWS = ("mean", "std", "paper")  # the seed column of a multi-seed table's summary rows


def _table_row(name: str, m: dict, ks) -> dict:
    from ..paper import COLUMNS

    named = {"AUC": m["auc"], "AUC_global": m["auc_global"]}
    for k in ks:
        named[f"RT@{k}"] = m[f"recall_true@{k}"]
        named[f"R@{k}"] = m[f"recall@{k}"]
    row = {c: named[c] for c in COLUMNS[name] if c in named}
    row.update({"MRR@10": m.get("mrr@10", float("nan")), "NDCG@10": m.get("ndcg@10", float("nan")),
                "samples": m["samples"], "auc_batches": m["auc_batches"],
                "auc_batches_skipped": m["auc_batches_skipped"]})
    return row


def seed_summary(name: str, variant: str, rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation (ddof 1) over a variant's seed rows of every metric column, and
    the paper's numbers beside them (empty where the paper reports none)."""
    import numpy as np

    from ..paper import COLUMNS, PAPER, PAPER_ROWS

    counts = ("samples", "auc_batches", "auc_batches_skipped")  # the same split for every seed: not averaged
    cols = [c for c in rows[0] if c not in ("model", "paper_row", "seed", *counts)]
    stats = {}
    for what, fn in (("mean", np.mean), ("std", lambda v: np.std(v, ddof=1) if len(v) > 1 else float("nan"))):
        row = {"model": variant, "paper_row": PAPER_ROWS.get(variant, ""), "seed": what}
        for c in cols:
            vals = [r[c] for r in rows if r[c] is not None]
            row[c] = float(fn(vals)) if vals else None
        stats[what] = row
    paper = {"model": variant, "paper_row": PAPER_ROWS.get(variant, ""), "seed": "paper",
             **{c: PAPER[name].get(variant, {}).get(c) for c in cols if c in COLUMNS[name]}}
    return [stats["mean"], stats["std"], paper]


def rec_table(name: str, runs: list, fingerprint_files: list, *, out, provenance, ks, auc_batch_size: int,
              config: dict) -> None:
    """Table 1 or 3 from stage-2 test predictions, with a sibling provenance file (hash of the whole config,
    data fingerprint, the paper's numbers, the AUC protocol).

    ``runs``: (variant, seed, predictions) per row; seed None for one run per variant (one row each, no seed
    column). With several seeds (tables.seeds) a ``seed`` column: one row per seed, then each variant's
    mean, std and the paper's numbers (rows with seed "mean", "std", "paper")."""
    from ..config import config_hash
    from ..io import data_fingerprint
    from ..paper import PAPER, PAPER_ROWS, PROTOCOL
    from .training import metrics_from_predictions

    multi = any(seed is not None for _, seed, _ in runs) and len({s for _, s, _ in runs}) > 1
    rows, full, per_variant = [], {}, {}
    for variant, seed, path in runs:
        m = metrics_from_predictions(path, ks=ks, auc_batch_size=auc_batch_size)
        row = {"model": variant, "paper_row": PAPER_ROWS.get(variant, ""), **({"seed": seed} if multi else {}),
               **_table_row(name, m, ks)}
        if multi:
            full.setdefault(variant, {})[str(seed)] = m
            per_variant.setdefault(variant, []).append(row)
        else:
            full[variant] = m
            rows.append(row)
    for variant, seed_rows in per_variant.items():  # per-seed rows, then the variant's summary
        rows += seed_rows + seed_summary(name, variant, seed_rows)
    write_csv(out, rows)
    variants = list(dict.fromkeys(v for v, _, _ in runs))
    write_json(provenance, {
        "table": name,
        "config_hash": config_hash(config),
        "data_fingerprint": data_fingerprint(fingerprint_files),
        "data_files": [str(p) for p in fingerprint_files],
        "toy": bool(config["toy"]["enabled"]),
        "protocol": PROTOCOL.format(auc_batch_size=auc_batch_size),
        "variants": {v: config["variants"]["recommend"][v] for v in variants},
        "seeds": sorted({s for _, s, _ in runs if s is not None}) or None,
        "metrics": full,
        "paper": PAPER[name],
    })
    log.info("%s: %s", name, json.dumps(rows))


def local_models(models) -> list[str]:
    """The frozen models that are local folders, for the resume fingerprint (hub ids are not files)."""
    return [m for m in (models.plm, models.text_encoder) if Path(m).is_dir()]


# -- the training and prediction rules of the prompt encoder (recommend.training has their building blocks) --

@multi_process
def pretrain(train, valid, kg_tensors, matrix=None, contributions=None, *, model_out, metrics_out, work_dir,
             models: BaseModels | dict, section: PromptSettings | dict, train_cfg: TrainSettings | dict,
             flags: Variant | dict, leave_dialog_out: bool) -> None:
    """Stage 1: semantic-fusion pre-training (ECR_SPEC 5.1), validated by ranking over all entities."""
    from ..config import section as typed
    from ..train import Stage, TrainConfig, TrainSettings, fingerprint, run_stage
    from .data import pretrain_samples
    from .training import (BaseModels, PromptSettings, Variant, build_model, cooccurrence, fingerprint_params,
                           load_setup, make_collator, rec_validation, text_sides, write_model)

    models, train_cfg = typed(BaseModels, models, "models"), typed(TrainSettings, train_cfg, "train")
    section, flags = typed(PromptSettings, section, "pretrain"), typed(Variant, flags, "variants.pretrain")

    def build(acc) -> Stage:
        setup = load_setup(models, kg_tensors, train_cfg.precision)
        lm, enc = text_sides(setup, section)
        tr = pretrain_samples(pq.read_table(train), lm, enc, section.entity_max_length)
        va = pretrain_samples(pq.read_table(valid), lm, enc, section.entity_max_length)
        co = cooccurrence(flags, matrix, contributions)
        model = build_model(setup, section, flags, n_prefix=0, fusion="entity")
        all_entities = list(range(setup.kg_meta["n_entity"] - 1))  # pre-training ranks over all entities

        def write(result) -> None:
            write_model(model_out, result.best_state, model.prompt.cfg, {"stage": "pretrain"})
            write_json(metrics_out, result.summary(train_samples=len(tr), valid_samples=len(va)))

        return Stage(model, model.prompt, tr, make_collator(setup, section, co, leave_dialog_out=leave_dialog_out),
                     write, evaluate=rec_validation(model, va, make_collator(setup, section, co), section,
                                                    all_entities, acc))

    fp = fingerprint(fingerprint_params(section=section, flags=flags, models=models, precision=train_cfg.precision),
                     [p for p in (train, valid, kg_tensors, matrix) if p] + local_models(models))
    run_stage(build, task="rec", cfg=TrainConfig.from_config(section, train_cfg), work_dir=work_dir, fingerprint=fp)


@multi_process
def conversation_train(train, valid, kg_tensors, init, *, model_out, metrics_out, work_dir, models: BaseModels | dict,
                       section: ConversationTraining | dict, train_cfg: TrainSettings | dict) -> None:
    """The UniCRS conversation module (ECR_SPEC 4.7), from the UniCRS stage-1 prompt encoder."""
    from ..config import section as typed
    from ..train import Stage, TrainConfig, TrainSettings, fingerprint, run_stage
    from .data import conversation_samples
    from .training import (BaseModels, ConversationTraining, Variant, build_model, conversation_validation,
                           fingerprint_params, load_setup, make_collator, text_sides, write_model)

    models, train_cfg = typed(BaseModels, models, "models"), typed(TrainSettings, train_cfg, "train")
    section = typed(ConversationTraining, section, "conversation")

    def build(acc) -> Stage:
        setup = load_setup(models, kg_tensors, train_cfg.precision)
        lm, enc = text_sides(setup, section)
        kw = dict(resp_max_length=section.resp_max_length, for_generation=False)
        tr = conversation_samples(pq.read_table(train), lm, enc, section.entity_max_length, **kw)
        va = conversation_samples(pq.read_table(valid), lm, enc, section.entity_max_length, **kw)
        model = build_model(setup, section, Variant(emotions=False, global_entities=False),
                            n_prefix=section.n_prefix_conv, fusion="token", init=init)
        collate = make_collator(setup, section, None)

        def write(result) -> None:
            write_model(model_out, result.best_state, model.prompt.cfg, {"stage": "conversation"})
            write_json(metrics_out, result.summary(train_samples=len(tr), valid_samples=len(va)))

        return Stage(model, model.prompt, tr, collate, write,
                     evaluate=conversation_validation(model, va, collate, section, acc))

    fp = fingerprint(fingerprint_params(section=section, models=models, precision=train_cfg.precision),
                     [train, valid, kg_tensors, init] + local_models(models))
    run_stage(build, task="conv", cfg=TrainConfig.from_config(section, train_cfg), work_dir=work_dir, fingerprint=fp)


def conversation_generate(rec_tables: dict, kg_tensors, model_path, *, outputs: dict, models: BaseModels | dict,
                          section: ConversationSettings | dict, train_cfg: TrainSettings | dict) -> None:
    """u_r for every recommender turn with a context, per split: greedy, ``no_repeat_ngram_size``, at most
    ``max_gen_len`` new tokens, the input ending with "System:" (ECR_SPEC 4.7). Keyed by dialog and turn."""
    import pyarrow as pa
    import torch

    from ..config import section as typed
    from ..io import write_parquet
    from ..models.lm import greedy_generate
    from ..train import TrainSettings, make_accelerator
    from .data import conversation_samples
    from .training import (RESPONSE_SCHEMA, BaseModels, ConversationSettings, Variant, build_model, load_setup,
                           make_collator, text_sides)

    models, train_cfg = typed(BaseModels, models, "models"), typed(TrainSettings, train_cfg, "train")
    section = typed(ConversationSettings, section, "conversation")
    acc = make_accelerator(train_cfg.precision)
    setup = load_setup(models, kg_tensors, train_cfg.precision)
    lm, enc = text_sides(setup, section)
    model = build_model(setup, section, Variant(emotions=False, global_entities=False),
                        n_prefix=section.n_prefix_conv, fusion="token", init=model_path)
    model.to(acc.device).eval()
    collate = make_collator(setup, section, None, left_pad_lm=True)
    tok = setup.frozen.lm_tokenizer
    for split, path in rec_tables.items():
        samples = conversation_samples(pq.read_table(path), lm, enc, section.entity_max_length,
                                       resp_max_length=section.resp_max_length, for_generation=True)
        rows = []
        for lo in range(0, len(samples), section.gen_batch_size):
            chunk = samples[lo:lo + section.gen_batch_size]
            batch = {k: (v.to(acc.device) if torch.is_tensor(v) else v) for k, v in collate(chunk).items()}
            with torch.no_grad(), acc.autocast():
                table = model.prompt.entity_table()
                prefix = model.prefix(batch, table)
                new = greedy_generate(model.lm, prefix, batch["lm_ids"], batch["lm_mask"],
                                      max_new_tokens=section.max_gen_len, eos_token_id=tok.eos_token_id,
                                      no_repeat_ngram_size=section.no_repeat_ngram_size)
            for s, ids in zip(chunk, new):
                rows.append({"dialog_id": s.dialog_id, "turn": s.turn,
                             "resp": tok.decode(ids, skip_special_tokens=False).replace(tok.pad_token, "").strip()})
        write_parquet(outputs[split], pa.Table.from_pylist(rows, schema=RESPONSE_SCHEMA))
        log.info("%s: %d responses", split, len(rows))


@multi_process
def recommend_train(train, valid, kg_tensors, item_ids, matrix=None, contributions=None, init=None, *,
                    train_responses=None, valid_responses=None, model_out, metrics_out, work_dir,
                    models: BaseModels | dict, section: RecommendTraining | dict, train_cfg: TrainSettings | dict,
                    flags: Variant | dict, leave_dialog_out: bool) -> None:
    """Stage 2: emotion-aware recommendation (ECR_SPEC 5.2), from a stage-1 prompt encoder."""
    from ..config import section as typed
    from ..io import read_json
    from ..train import Stage, TrainConfig, TrainSettings, fingerprint, run_stage
    from .training import (BaseModels, RecommendTraining, Variant, build_model, cooccurrence, fingerprint_params,
                           kg_neighbourhood, load_setup, make_collator, popularity_prior, rec_inputs,
                           rec_validation, write_model)

    models, train_cfg = typed(BaseModels, models, "models"), typed(TrainSettings, train_cfg, "train")
    section, flags = typed(RecommendTraining, section, "recommend"), typed(Variant, flags, "variants.recommend")

    def build(acc) -> Stage:
        setup = load_setup(models, kg_tensors, train_cfg.precision)
        items = read_json(item_ids)
        tr = rec_inputs(setup, section, flags, train, train_responses)
        va = rec_inputs(setup, section, flags, valid, valid_responses)
        co = cooccurrence(flags, matrix, contributions)
        model = build_model(setup, section, flags, n_prefix=section.n_prefix_rec, fusion="entity", init=init,
                            item_ids=items, loss_labels=section.loss_labels)
        if flags.popularity_prior:
            popularity_prior(model, tr)
        kg = kg_neighbourhood(flags, setup, items)

        def write(result) -> None:
            write_model(model_out, result.best_state, model.prompt.cfg, {"stage": "recommend"})
            write_json(metrics_out, result.summary(train_samples=len(tr), valid_samples=len(va)))

        return Stage(model, model.prompt, tr,
                     make_collator(setup, section, co, leave_dialog_out=leave_dialog_out, kg=kg), write,
                     evaluate=rec_validation(model, va, make_collator(setup, section, co, kg=kg), section, items, acc))

    fp = fingerprint(fingerprint_params(section=section, flags=flags, models=models, precision=train_cfg.precision),
                     [p for p in (train, valid, kg_tensors, item_ids, matrix, init, train_responses) if p] + local_models(models))
    run_stage(build, task="rec", cfg=TrainConfig.from_config(section, train_cfg), work_dir=work_dir, fingerprint=fp)


def recommend_predict(tables: dict, kg_tensors, item_ids, matrix=None, contributions=None, model_path=None, *,
                      responses: dict, outputs: dict, models: BaseModels | dict, section: RecommendSettings | dict,
                      train_cfg: TrainSettings | dict, flags: Variant | dict) -> None:
    """Ranked predictions per split, one row per (dialog, turn, gold item), in the sample order of the split
    file (the order the paper's batch AUC depends on)."""
    import numpy as np
    import pyarrow as pa

    from ..config import section as typed
    from ..evaluate import recall_at_k
    from ..io import read_json, write_parquet
    from ..train import TrainSettings, make_accelerator
    from .training import (PREDICTION_SCHEMA, BaseModels, RecommendSettings, Variant, build_model, cooccurrence,
                           kg_neighbourhood, load_setup, make_collator, rec_inputs, score_samples)

    models, train_cfg = typed(BaseModels, models, "models"), typed(TrainSettings, train_cfg, "train")
    section, flags = typed(RecommendSettings, section, "recommend"), typed(Variant, flags, "variants.recommend")
    acc = make_accelerator(train_cfg.precision)
    setup = load_setup(models, kg_tensors, train_cfg.precision)
    items = read_json(item_ids)
    co = cooccurrence(flags, matrix, contributions)
    model = build_model(setup, section, flags, n_prefix=section.n_prefix_rec, fusion="entity", init=model_path,
                        item_ids=items)
    model.to(acc.device)
    collate = make_collator(setup, section, co, kg=kg_neighbourhood(flags, setup, items))
    for split, path in tables.items():
        samples = rec_inputs(setup, section, flags, path, responses.get(split))
        s = score_samples(model, samples, collate, batch_size=section.eval_batch_size, item_ids=items,
                          top_k=section.top_k, accelerator=acc)
        if acc.is_main_process:
            rows = pa.table({
                "dialog_id": [x.dialog_id for x in samples], "turn": [x.turn for x in samples],
                "item": [x.target for x in samples], "feedback": [x.feedback for x in samples],
                "gold_rank": s["rank"].astype(np.int32), "gold_ties": s["ties"].astype(np.int32),
                "gold_prob": s["prob"].astype(np.float32),
                "loss": s["loss"].astype(np.float32), "top_items": list(s["top_items"].astype(np.int64)),
                "top_scores": list(s["top_scores"].astype(np.float32)),
            }, schema=PREDICTION_SCHEMA)
            write_parquet(outputs[split], rows)
            log.info("%s: %d samples, R@10 %.4f", split, rows.num_rows, recall_at_k(s["rank"], 10, s["ties"]))
