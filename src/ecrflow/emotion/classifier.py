"""The emotion classifier (paper App. A.1): a GPT-2-style model fine-tuned as a multi-label classifier over
the nine types with focal loss (the types are imbalanced: like 46 %, surprise 3 %), evaluated by Recall@2
on a held-out part of the annotations (paper: 87.75 %), then applied to every seeker utterance.

The labelled dialogues are the input files with an ``emotion`` dict on every seeker message with text: all
nine types with their sigmoid probabilities, sorted by probability (the ECR release's format, so that the
processing stage reads either source unchanged; its threshold beta keeps the relevant ones), and ``[]``
(the release's empty label set) on every seeker message without text.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..constants import EMOTIONS
from ..io import iter_jsonl, read_json, write_folder, write_json, write_jsonl
from ..train import Stage, StageSettings, TrainConfig, TrainSettings, fingerprint, run_stage, validation
from .annotate import clean_text

log = logging.getLogger(__name__)

META = "classifier.json"


@dataclass(frozen=True, kw_only=True)
class ClassifierSettings(StageSettings):
    """The ``classifier`` section."""

    max_length: int  # tokens per utterance
    focal_gamma: float
    focal_alpha: float | None  # None: no weighting of the positive terms
    valid_fraction: float  # held-out dialogues for Recall@2


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float | None = 0.25) -> torch.Tensor:
    """Multi-label focal loss (Lin et al. 2017), the mean over all (sample, type) terms:
    -alpha_t (1 - p_t)^gamma log p_t, with p_t the probability of the true 0/1 value. ``gamma = 0`` and
    ``alpha = None`` give binary cross-entropy."""
    targets = targets.to(logits.dtype)
    ce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()


def recall_at_k(scores: np.ndarray, labels: np.ndarray, k: int = 2) -> float:
    """Mean over utterances with at least one gold type of |top-k types ∩ gold| / |gold| (the annotator
    gives at most two, so Recall@2 is 1 when the two best scores are the gold types)."""
    scores, labels = np.asarray(scores), np.asarray(labels).astype(bool)
    keep = labels.any(1)
    if not keep.any():
        return float("nan")
    top = np.argsort(-scores[keep], axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(labels[keep], top, axis=1).sum(1)
    return float((hits / labels[keep].sum(1)).mean())


def multi_hot(label_lists: list[list[str]]) -> np.ndarray:
    out = np.zeros((len(label_lists), len(EMOTIONS)), dtype=np.float32)
    index = {e: i for i, e in enumerate(EMOTIONS)}
    for r, labels in enumerate(label_lists):
        for t in labels:
            out[r, index[t]] = 1.0
    return out


class FocalObjective(nn.Module):
    def __init__(self, model: nn.Module, gamma: float, alpha: float | None):
        super().__init__()
        self.model, self.gamma, self.alpha = model, gamma, alpha

    def forward(self, batch: dict, task: str = "emotion") -> dict:
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return {"loss": focal_loss(logits.float(), batch["labels"], self.gamma, self.alpha), "logits": logits}


def _load(model_name, num_labels: int | None = None):
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    from ..generate.generator import load_tokenizer

    tok = load_tokenizer(model_name)
    if not num_labels:  # a trained classifier: its head is in the folder
        return AutoModelForSequenceClassification.from_pretrained(model_name, pad_token_id=tok.pad_token_id), tok
    # A language model with a new classification head: transformers' load report (a warning listing the
    # head's weights as newly initialised) says what is intended here, so it goes to this log as one line.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_name, pad_token_id=tok.pad_token_id, output_loading_info=True, num_labels=num_labels,
            problem_type="multi_label_classification")
    finally:
        transformers_logging.set_verbosity(verbosity)
    log.info("classifier from %s; newly initialised: %s", model_name, ", ".join(sorted(info["missing_keys"])))
    return model, tok


class Collator:
    def __init__(self, tok, max_length: int):
        self.tok, self.max_length = tok, max_length

    def __call__(self, items: list[tuple[str, np.ndarray]]) -> dict:
        enc = self.tok([t for t, _ in items], padding=True, truncation=True, max_length=self.max_length,
                       return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": torch.tensor(np.stack([y for _, y in items]))}


@torch.no_grad()
def predict(model: nn.Module, tok, texts: list[str], *, max_length: int, batch_size: int = 64, device=None) -> np.ndarray:
    """Sigmoid probabilities, one row of nine per text."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for lo in range(0, len(texts), batch_size):
        enc = tok(texts[lo:lo + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt").to(device)
        out.append(torch.sigmoid(model(**enc).logits.float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(EMOTIONS)), dtype=np.float32)


def split_annotations(rows: list[dict], valid_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Labelled annotations, split by dialogue (seeded) so that no dialogue is on both sides."""
    rows = [r for r in rows if r["labels"]]
    dialogs = sorted({r["dialog_id"] for r in rows})
    order = np.random.default_rng(seed).permutation(len(dialogs))
    n_valid = max(1, round(valid_fraction * len(dialogs))) if len(dialogs) > 1 else 0
    valid_ids = {dialogs[i] for i in order[:n_valid]}
    return [r for r in rows if r["dialog_id"] not in valid_ids], [r for r in rows if r["dialog_id"] in valid_ids]


def train_classifier(annotations, *, out_dir, metrics_out, work_dir, model_name: str, section: ClassifierSettings,
                     train_cfg: TrainSettings) -> None:
    """Fine-tune ``model_name`` on the annotations with focal loss; the best epoch by Recall@2 on held-out
    dialogues, and the Recall@2 of the label frequencies for comparison."""
    rows = [r for _, r in iter_jsonl(annotations, expected="an annotation object")]
    tr, va = split_annotations(rows, section.valid_fraction, section.seed)
    if not tr:
        raise ValueError(f"{annotations}: no annotated utterance has a label; see the annotation summary")

    def build(acc) -> Stage:
        model, tok = _load(model_name, len(EMOTIONS))
        data = list(zip([clean_text(r["text"]) for r in tr], multi_hot([r["labels"] for r in tr])))
        y_valid = multi_hot([r["labels"] for r in va])

        def measure(va) -> dict:
            probs = predict(model, tok, [clean_text(r["text"]) for r in va], max_length=section.max_length,
                            batch_size=section.eval_batch_size, device=acc.device)
            loss = focal_loss(torch.logit(torch.tensor(probs).clamp(1e-6, 1 - 1e-6)), torch.tensor(y_valid),
                              section.focal_gamma, section.focal_alpha).item()
            return {"loss": loss, "recall@2": recall_at_k(probs, y_valid, 2),
                    "recall@1": recall_at_k(probs, y_valid, 1)}

        def write(result) -> None:
            best = next(e["valid"] for e in result.state.history if e["epoch"] == result.state.best_epoch)
            # every utterance ranked by the training label frequencies: what a classifier must beat
            prior = multi_hot([r["labels"] for r in tr]).mean(0)
            baseline = recall_at_k(np.tile(prior, (len(va), 1)), y_valid, 2) if va else None
            meta = {"labels": list(EMOTIONS), "max_length": section.max_length, "base_model": model_name,
                    "valid_recall@2": best.get("recall@2"), "majority_recall@2": baseline}

            def write_model(folder: Path) -> None:
                model.save_pretrained(folder)
                tok.save_pretrained(folder)
                write_json(folder / META, meta)

            write_folder(out_dir, write_model)
            write_json(metrics_out, result.summary(train_utterances=len(tr), valid_utterances=len(va),
                                                   valid_before_training=result.before, valid_best=best,
                                                   majority_recall_at_2=baseline))
            log.info("Recall@2 on %d held-out utterances: %s (majority baseline %s)", len(va), best.get("recall@2"),
                     baseline)

        return Stage(FocalObjective(model, section.focal_gamma, section.focal_alpha), model, data,
                     Collator(tok, section.max_length), write,
                     evaluate=validation(va, measure, empty={"loss": None, "recall@2": None}), params_only=True,
                     validate_before=True)

    fp = fingerprint({"section": asdict(section), "model": model_name, "precision": train_cfg.precision},
                     [annotations])
    run_stage(build, task="emotion", cfg=TrainConfig.from_config(section, train_cfg), work_dir=work_dir,
              fingerprint=fp, seed=section.seed)


def seeker_texts(dialogs: list[dict]) -> tuple[list[tuple[int, int]], list[str], int]:
    """The seeker messages to classify: ((dialog, message) positions, cleaned texts, and the number of seeker
    messages without text). Those get ``emotion: []`` here, in place: the release's empty label set, which
    process_split reads as no emotion (a following recommendation sample then weighs as neutral, its default)."""
    where, texts, empty = [], [], 0
    for d, obj in enumerate(dialogs):
        seeker = obj.get("initiatorWorkerId")
        for m, msg in enumerate(obj.get("messages", [])):
            if msg.get("senderWorkerId") != seeker:
                continue
            text = clean_text(msg.get("text") or "")
            if text:
                where.append((d, m))
                texts.append(text)
            else:
                msg["emotion"] = []
                empty += 1
    return where, texts, empty


def label_dialogs(dialog_file, model_dir, *, out, stats_out, batch_size: int = 64) -> None:
    """Write the dialogues with an emotion dict on every seeker message with text, and ``[]`` (the ECR
    release's "no label") on a seeker message without text: every seeker message then has an ``emotion``, as
    process_split requires of a labelled file, and an empty one carries no emotion, as in the release."""
    from transformers import AutoModelForSequenceClassification

    from ..generate.generator import load_tokenizer

    meta = read_json(Path(model_dir) / META)
    tok = load_tokenizer(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    dialogs = [obj for _, obj in iter_jsonl(dialog_file, expected="a ReDial conversation object")]
    where, texts, empty = seeker_texts(dialogs)
    probs = predict(model, tok, texts, max_length=meta["max_length"], batch_size=batch_size)
    for (d, m), p in zip(where, probs):
        order = np.argsort(-p, kind="stable")
        dialogs[d]["messages"][m]["emotion"] = {meta["labels"][i]: round(float(p[i]), 4) for i in order}
    write_jsonl(out, dialogs)
    top = np.bincount(probs.argmax(1), minlength=len(EMOTIONS)) if len(probs) else np.zeros(len(EMOTIONS))
    write_json(stats_out, {"dialogs": len(dialogs), "seeker_utterances": len(texts),
                           "seeker_utterances_empty_text": empty,
                           "top_type_shares": {e: float(c) / max(len(texts), 1) for e, c in zip(meta["labels"], top)}})
    log.info("%s: %d seeker utterances labelled", dialog_file, len(texts))
