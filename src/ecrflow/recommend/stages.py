"""The prompt-encoder stages as functions of files: stage 1 (semantic-fusion pre-training, ECR_SPEC 5.1),
the UniCRS conversation module (4.7) with its responses u_r, stage 2 (emotion-aware recommendation, 5.2)
and its ranked predictions (6.1). Each writes its outputs only when it has finished.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..cooccurrence import CoOccurrence
from ..evaluate import gold_ranks, recommendation_metrics
from ..io import atomic_path, read_json, write_json, write_parquet
from ..kg import load_kg_tensors
from ..models.lm import FrozenModels, greedy_generate, load_frozen
from ..train import TrainConfig, Trainer, fingerprint, load_safetensors, multi_process
from .data import (FEEDBACK_CODE, Collator, Sample, TextSide, conversation_samples, pretrain_samples,
                   rec_samples)
from .model import PromptedModel, build_prompt_encoder

log = logging.getLogger(__name__)


@dataclass
class Setup:
    frozen: FrozenModels
    kg_meta: dict
    edge_index: torch.Tensor
    edge_type: torch.Tensor

    @property
    def pad_entity(self) -> int:
        return self.kg_meta["pad_entity"]


def load_setup(models: dict, kg_tensors, precision: str = "fp32") -> Setup:
    from ..train import mixed_precision

    edge_index, edge_type, meta = load_kg_tensors(kg_tensors)
    dtype = torch.bfloat16 if mixed_precision(precision) == "bf16" else None
    return Setup(load_frozen(models["plm"], models["text_encoder"], dtype=dtype), meta, edge_index, edge_type)


def text_sides(setup: Setup, section: dict) -> tuple[TextSide, TextSide]:
    return (TextSide(setup.frozen.lm_tokenizer, section["max_length"]),
            TextSide(setup.frozen.encoder_tokenizer, section["max_length"]))


def make_collator(setup: Setup, section: dict, co: CoOccurrence | None, *, leave_dialog_out: bool = False,
                  left_pad_lm: bool = False) -> Collator:
    return Collator(lm_pad=setup.frozen.lm_tokenizer.pad_token_id, enc_pad=setup.frozen.encoder_tokenizer.pad_token_id,
                    pad_entity=setup.pad_entity, emotion_top_n=section["emotion_slots"], cooccurrence=co,
                    leave_dialog_out=leave_dialog_out, left_pad_lm=left_pad_lm)


def build_model(setup: Setup, section: dict, flags: dict, *, n_prefix: int, fusion: str, init=None,
                item_ids=None, loss_labels: str = "entities") -> PromptedModel:
    from ..train import seed_everything

    seed_everything(section["seed"])  # the initialisation is part of the run: same seed, same model
    prompt = build_prompt_encoder(setup.frozen, setup.kg_meta, setup.edge_index, setup.edge_type,
                                  num_bases=section["num_bases"], emotion_dim=section["emotion_dim"],
                                  n_prefix=n_prefix, emotions=flags["emotions"],
                                  global_entities=flags["global_entities"], fusion=fusion,
                                  mask_padding=section["mask_padding"])
    if init is not None:
        report = prompt.load_compatible(load_safetensors(init))
        log.info("initialised from %s: %d tensors loaded, new: %s, ignored: %s", init, len(report["loaded"]),
                 report["new"] or "none", report["ignored"] or "none")
    ids = torch.as_tensor(item_ids) if item_ids is not None else None
    return PromptedModel(setup.frozen, prompt, item_ids=ids, loss_labels=loss_labels)


def _cooccurrence(flags: dict, matrix, contributions) -> CoOccurrence | None:
    if not flags["global_entities"]:
        return None
    if matrix is None:
        raise ValueError("global_entities is on but no co-occurrence matrix was given")
    return CoOccurrence.load(matrix, contributions)


def _loader(samples: list[Sample], collate, batch_size: int, accelerator):
    from torch.utils.data import DataLoader

    def with_pos(idx):
        batch = collate([samples[i] for i in idx])
        batch["pos"] = torch.tensor(idx)
        return batch

    dl = DataLoader(list(range(len(samples))), batch_size=batch_size, shuffle=False, collate_fn=with_pos)
    return accelerator.prepare(dl) if accelerator is not None else dl


@torch.no_grad()
def score_samples(model: PromptedModel, samples: list[Sample], collate, *, batch_size: int, item_ids: list[int],
                  top_k: int, accelerator) -> dict[str, np.ndarray]:
    """Per-sample loss, gold rank among the items, gold softmax probability over all entities and the top-k
    items with scores, in sample order (gathered over processes)."""
    model.eval()
    items = torch.as_tensor(item_ids, device=accelerator.device)
    pos_of = torch.full((model.prompt.cfg.n_entity,), -1, dtype=torch.long, device=accelerator.device)
    pos_of[items] = torch.arange(len(items), device=accelerator.device)
    k = min(top_k, len(item_ids))
    parts: dict[str, list] = {n: [] for n in ("pos", "loss", "rank", "prob", "top_items", "top_scores")}
    for batch in _loader(samples, collate, batch_size, accelerator):
        with accelerator.autocast():
            out = model(batch, "rec")
        logits = out["logits"]
        target = batch["target"]
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        prob = logits.softmax(-1).gather(1, target[:, None]).squeeze(1)
        item_scores = logits[:, items]
        gold_col = pos_of[target]
        rank = torch.from_numpy(gold_ranks(item_scores.cpu().numpy(), gold_col.clamp(min=0).cpu().numpy()))
        rank = torch.where(gold_col.cpu() < 0, torch.full_like(rank, len(item_ids)), rank).to(logits.device)
        top_s, top_i = item_scores.topk(k, dim=1)
        for name, t in (("pos", batch["pos"]), ("loss", ce), ("rank", rank), ("prob", prob),
                        ("top_items", items[top_i]), ("top_scores", top_s)):
            parts[name].append(accelerator.gather_for_metrics(t.contiguous()).cpu())
    merged = {n: torch.cat(v).numpy() for n, v in parts.items()}
    order = np.argsort(merged.pop("pos"), kind="stable")
    return {n: v[order] for n, v in merged.items()}


def _validation(model, samples, collate, section, item_ids, accelerator, ks=(1, 10, 50)):
    def evaluate() -> dict:
        s = score_samples(model, samples, collate, batch_size=section["eval_batch_size"], item_ids=item_ids,
                          top_k=max(ks), accelerator=accelerator)
        fb = np.array([FEEDBACK_CODE[x.feedback] for x in samples])
        metrics = recommendation_metrics(s["rank"], fb, s["prob"], ks=ks)
        keep = {k: v for k, v in metrics.items() if k.startswith(("recall@", "auc"))}
        return {"loss": float(s["loss"].mean()), **keep}
    return evaluate


def _run_fit(model, samples, collate, section, train_cfg, work_dir, fp_params, fp_inputs, evaluate, task, accelerator):
    cfg = TrainConfig.from_config(section, train_cfg)
    fp_params = {**fp_params, "precision": train_cfg["precision"]}
    trainer = Trainer(model, model.prompt, cfg, work_dir, fingerprint(fp_params, fp_inputs), task=task,
                      accelerator=accelerator)
    result = trainer.fit(samples, collate, evaluate=evaluate)
    return trainer, result


def _write_model(path, state: dict, cfg, extra: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata={"prompt_config": json.dumps(cfg.to_dict()), **extra})


# -- stage 1 ----------------------------------------------------------------------------------------------------

@multi_process
def pretrain(train, valid, kg_tensors, matrix=None, contributions=None, *, model_out, metrics_out, work_dir, models: dict,
             section: dict, train_cfg: dict, flags: dict, leave_dialog_out: bool) -> None:
    from ..train import make_accelerator

    acc = make_accelerator(train_cfg["precision"])
    setup = load_setup(models, kg_tensors, train_cfg["precision"])
    lm, enc = text_sides(setup, section)
    tr = pretrain_samples(pq.read_table(train), lm, enc, section["entity_max_length"])
    va = pretrain_samples(pq.read_table(valid), lm, enc, section["entity_max_length"])
    co = _cooccurrence(flags, matrix, contributions)
    model = build_model(setup, section, flags, n_prefix=0, fusion="entity")
    all_entities = list(range(setup.kg_meta["n_entity"] - 1))  # pre-training ranks over all entities
    evaluate = _validation(model, va, make_collator(setup, section, co), section, all_entities, acc)
    trainer, result = _run_fit(model, tr, make_collator(setup, section, co, leave_dialog_out=leave_dialog_out),
                               section, train_cfg, work_dir, {"section": section, "flags": flags, "models": models},
                               [p for p in (train, valid, kg_tensors, matrix) if p], evaluate, "rec", acc)
    if acc.is_main_process:
        _write_model(model_out, result.best_state, model.prompt.cfg, {"stage": "pretrain"})
        write_json(metrics_out, result.summary(train_samples=len(tr), valid_samples=len(va)))
    trainer.cleanup()


# -- conversation module ----------------------------------------------------------------------------------------

@multi_process
def conversation_train(train, valid, kg_tensors, init, *, model_out, metrics_out, work_dir, models: dict,
                       section: dict, train_cfg: dict) -> None:
    from ..train import make_accelerator

    acc = make_accelerator(train_cfg["precision"])
    setup = load_setup(models, kg_tensors, train_cfg["precision"])
    lm, enc = text_sides(setup, section)
    kw = dict(resp_max_length=section["resp_max_length"], for_generation=False)
    tr = conversation_samples(pq.read_table(train), lm, enc, section["entity_max_length"], **kw)
    va = conversation_samples(pq.read_table(valid), lm, enc, section["entity_max_length"], **kw)
    flags = {"emotions": False, "global_entities": False}
    model = build_model(setup, section, flags, n_prefix=section["n_prefix_conv"], fusion="token", init=init)
    collate = make_collator(setup, section, None)

    @torch.no_grad()
    def evaluate() -> dict:
        model.eval()
        total, n = 0.0, 0
        for batch in _loader(va, collate, section["eval_batch_size"], acc):
            with acc.autocast():
                loss = model(batch, "conv")["loss"]
            total += acc.gather_for_metrics(loss[None]).sum().item()
            n += acc.num_processes
        return {"loss": total / max(n, 1)}

    trainer, result = _run_fit(model, tr, collate, section, train_cfg, work_dir,
                               {"section": section, "models": models}, [train, valid, kg_tensors, init],
                               evaluate, "conv", acc)
    if acc.is_main_process:
        _write_model(model_out, result.best_state, model.prompt.cfg, {"stage": "conversation"})
        write_json(metrics_out, result.summary(train_samples=len(tr), valid_samples=len(va)))
    trainer.cleanup()


RESPONSE_SCHEMA = pa.schema([("dialog_id", pa.string()), ("turn", pa.int32()), ("resp", pa.string())])


def conversation_generate(rec_tables: dict, kg_tensors, model_path, *, outputs: dict, models: dict,
                          section: dict, train_cfg: dict) -> None:
    """u_r for every recommender turn with a context, per split: greedy, ``no_repeat_ngram_size``, at most
    ``max_gen_len`` new tokens, the input ending with "System:" (ECR_SPEC 4.7). Keyed by dialog and turn."""
    from ..train import make_accelerator

    acc = make_accelerator(train_cfg["precision"])
    setup = load_setup(models, kg_tensors, train_cfg["precision"])
    lm, enc = text_sides(setup, section)
    flags = {"emotions": False, "global_entities": False}
    model = build_model(setup, section, flags, n_prefix=section["n_prefix_conv"], fusion="token", init=model_path)
    model.to(acc.device).eval()
    collate = make_collator(setup, section, None, left_pad_lm=True)
    tok = setup.frozen.lm_tokenizer
    for split, path in rec_tables.items():
        samples = conversation_samples(pq.read_table(path), lm, enc, section["entity_max_length"],
                                       resp_max_length=section["resp_max_length"], for_generation=True)
        rows = []
        for lo in range(0, len(samples), section["gen_batch_size"]):
            chunk = samples[lo:lo + section["gen_batch_size"]]
            batch = {k: (v.to(acc.device) if torch.is_tensor(v) else v) for k, v in collate(chunk).items()}
            with torch.no_grad(), acc.autocast():
                table = model.prompt.entity_table()
                prefix = model.prefix(batch, table)
                new = greedy_generate(model.lm, prefix, batch["lm_ids"], batch["lm_mask"],
                                      max_new_tokens=section["max_gen_len"], eos_token_id=tok.eos_token_id,
                                      no_repeat_ngram_size=section["no_repeat_ngram_size"])
            for s, ids in zip(chunk, new):
                rows.append({"dialog_id": s.dialog_id, "turn": s.turn,
                             "resp": tok.decode(ids, skip_special_tokens=False).replace(tok.pad_token, "").strip()})
        write_parquet(outputs[split], pa.Table.from_pylist(rows, schema=RESPONSE_SCHEMA))
        log.info("%s: %d responses", split, len(rows))


def load_responses(path) -> dict[tuple[str, int], str]:
    t = pq.read_table(path)
    return {(d, int(k)): r for d, k, r in zip(t.column("dialog_id").to_pylist(), t.column("turn").to_pylist(),
                                             t.column("resp").to_pylist())}


# -- stage 2 ----------------------------------------------------------------------------------------------------

def _rec_inputs(setup, section, flags, table_path, responses_path):
    lm, enc = text_sides(setup, section)
    weights = section["feedback_weights"] if flags.get("weighted_loss") else None
    responses = load_responses(responses_path) if (section["use_resp"] and responses_path) else None
    return rec_samples(pq.read_table(table_path), lm, enc, section["entity_max_length"], feedback_weights=weights,
                       responses=responses)


@multi_process
def recommend_train(train, valid, kg_tensors, item_ids, matrix=None, contributions=None, init=None, *, train_responses=None,
                    valid_responses=None, model_out, metrics_out, work_dir, models: dict, section: dict,
                    train_cfg: dict, flags: dict, leave_dialog_out: bool) -> None:
    from ..train import make_accelerator

    acc = make_accelerator(train_cfg["precision"])
    setup = load_setup(models, kg_tensors, train_cfg["precision"])
    items = read_json(item_ids)
    tr = _rec_inputs(setup, section, flags, train, train_responses)
    va = _rec_inputs(setup, section, flags, valid, valid_responses)
    co = _cooccurrence(flags, matrix, contributions)
    model = build_model(setup, section, flags, n_prefix=section["n_prefix_rec"], fusion="entity", init=init,
                        item_ids=items, loss_labels=section["loss_labels"])
    evaluate = _validation(model, va, make_collator(setup, section, co), section, items, acc)
    inputs = [p for p in (train, valid, kg_tensors, item_ids, matrix, init, train_responses) if p]
    trainer, result = _run_fit(model, tr, make_collator(setup, section, co, leave_dialog_out=leave_dialog_out),
                               section, train_cfg, work_dir, {"section": section, "flags": flags, "models": models},
                               inputs, evaluate, "rec", acc)
    if acc.is_main_process:
        _write_model(model_out, result.best_state, model.prompt.cfg, {"stage": "recommend"})
        write_json(metrics_out, result.summary(train_samples=len(tr), valid_samples=len(va)))
    trainer.cleanup()


PREDICTION_SCHEMA = pa.schema([
    ("dialog_id", pa.string()),
    ("turn", pa.int32()),
    ("item", pa.int64()),  # the gold item of the sample
    ("feedback", pa.string()),
    ("gold_rank", pa.int32()),  # 0-based rank of the gold item among all items (ties pessimistic)
    ("gold_prob", pa.float32()),  # softmax over all entities at the gold item (the AUC score, ECR_SPEC 6.1)
    ("loss", pa.float32()),
    ("top_items", pa.list_(pa.int64())),
    ("top_scores", pa.list_(pa.float32())),
])


def recommend_predict(tables: dict, kg_tensors, item_ids, matrix=None, contributions=None, model_path=None, *, responses: dict,
                      outputs: dict, models: dict, section: dict, train_cfg: dict, flags: dict) -> None:
    """Ranked predictions per split, one row per (dialog, turn, gold item), in the sample order of the split
    file (the order the paper's batch AUC depends on)."""
    from ..train import make_accelerator

    acc = make_accelerator(train_cfg["precision"])
    setup = load_setup(models, kg_tensors, train_cfg["precision"])
    items = read_json(item_ids)
    co = _cooccurrence(flags, matrix, contributions)
    model = build_model(setup, section, flags, n_prefix=section["n_prefix_rec"], fusion="entity", init=model_path,
                        item_ids=items)
    model.to(acc.device)
    collate = make_collator(setup, section, co)
    for split, path in tables.items():
        samples = _rec_inputs(setup, section, flags, path, responses.get(split))
        s = score_samples(model, samples, collate, batch_size=section["eval_batch_size"], item_ids=items,
                          top_k=section["top_k"], accelerator=acc)
        if acc.is_main_process:
            rows = pa.table({
                "dialog_id": [x.dialog_id for x in samples], "turn": [x.turn for x in samples],
                "item": [x.target for x in samples], "feedback": [x.feedback for x in samples],
                "gold_rank": s["rank"].astype(np.int32), "gold_prob": s["prob"].astype(np.float32),
                "loss": s["loss"].astype(np.float32), "top_items": list(s["top_items"].astype(np.int64)),
                "top_scores": list(s["top_scores"].astype(np.float32)),
            }, schema=PREDICTION_SCHEMA)
            write_parquet(outputs[split], rows)
            log.info("%s: %d samples, R@10 %.4f", split, rows.num_rows, float((s["rank"] < 10).mean()))


def metrics_from_predictions(path, *, ks, auc_batch_size: int) -> dict:
    t = pq.read_table(path, columns=["gold_rank", "feedback", "gold_prob"])
    fb = np.array([FEEDBACK_CODE[x] for x in t.column("feedback").to_pylist()])
    return recommendation_metrics(t.column("gold_rank").to_numpy(), fb, t.column("gold_prob").to_numpy(),
                                  ks=tuple(ks), auc_batch_size=auc_batch_size)
