"""The critic rule's step (called by workflow/scripts/critic.py), named as the rule in
workflow/rules/critic.smk."""

from __future__ import annotations

import logging

import numpy as np

from ..config import section as typed
from ..train import TrainSettings, fingerprint, multi_process
from . import SCALE, CriticSettings, critic_rows, fit_critic, head_metrics, predict, save_critic, split_by_dialog

log = logging.getLogger(__name__)


@multi_process
def critic(sample, files: dict, scores: dict, *, out_dir, metrics_out, table_out, work_dir, model_name: str,
           section: CriticSettings | dict, train_cfg: TrainSettings | dict) -> None:
    """Rows from the judged sample, split by dialogue, training, and ``critic.csv`` with each head's R^2 /
    MAE / Spearman on the held-out dialogues against the merged and each judge's scores."""
    from ..io import write_csv, write_json
    from ..judge.scoring import METRIC_KEYS
    from ..judge.contexts import read_sample, system_replies
    from ..judge.tables import read_scores

    section, train_cfg = typed(CriticSettings, section, "critic"), typed(TrainSettings, train_cfg, "train")
    metrics = list(METRIC_KEYS)
    contexts = read_sample(sample)
    judges = {name: read_scores(path) for name, path in scores.items()}
    rows = critic_rows(contexts, system_replies(contexts, files), judges, metrics)
    tr, va, te = split_by_dialog(rows, section.valid_fraction, section.test_fraction, section.seed)
    if not tr:
        raise ValueError("no judged reply to train the critic on; see the judge summaries")
    log.info("critic rows: %d train, %d valid, %d test (split by dialogue)", len(tr), len(va), len(te))
    dialogs = {name: sorted({r["dialog_id"] for r in part}) for name, part in (("train", tr), ("valid", va), ("test", te))}
    if set(dialogs["train"]) & (set(dialogs["valid"]) | set(dialogs["test"])):  # split_by_dialog's promise
        raise AssertionError("a held-out dialogue of the critic is also in its training rows")

    def write(model, enc, result) -> None:
        table = []
        evaluated = {"test": te, "valid": va}
        for split, part in evaluated.items():
            if not part:
                continue
            pred = predict(model, enc, [(r["context"], r["reply"]) for r in part])
            targets = {"merged": np.stack([r["target"] for r in part])}
            targets.update({name: np.stack([r["judges"][name] for r in part]) for name in judges})
            for target_name, target in targets.items():
                for m, v in head_metrics(pred, target, metrics).items():
                    # a head whose held-out judge scores do not vary has nothing to predict: R^2 and
                    # Spearman are undefined there, and the row says why
                    table.append({"split": split, "head": m, "target": target_name, "n": v["n"],
                                  "target_std": round(v["target_std"], 4), "r2": round(v["r2"], 4),
                                  "mae": round(v["mae"], 4), "spearman": round(v["spearman"], 4),
                                  "note": "judge scores have no variance" if v["target_std"] == 0 else ""})
            # what a critic must beat: every reply scored with the training mean
            mean = np.nanmean(np.stack([r["target"] for r in tr]), axis=0)
            for m, v in head_metrics(np.tile(mean, (len(part), 1)), targets["merged"], metrics).items():
                table.append({"split": split, "head": m, "target": "merged (train-mean baseline)", "n": v["n"],
                              "target_std": round(v["target_std"], 4), "r2": round(v["r2"], 4),
                              "mae": round(v["mae"], 4), "spearman": v["spearman"], "note": ""})
        meta = {"metrics": metrics, "max_length": section.max_length, "base_model": model_name, "scale": SCALE,
                "judges": list(judges)}
        save_critic(out_dir, model, enc.tok, meta)
        write_csv(table_out, table)
        # the dialogues on each side: critic.csv's held-out rows come from dialogues it never trained on
        write_json(metrics_out, result.summary(train_rows=len(tr), valid_rows=len(va), test_rows=len(te),
                                               dialogs=dialogs))

    fp = fingerprint({"section": section.__dict__, "model": model_name, "precision": train_cfg.precision},
                     [sample, *(f for f in files.values() if f), *scores.values()])
    fit_critic(tr, va, model_name=model_name, metrics=metrics, section=section, train_cfg=train_cfg,
               work_dir=work_dir, fp=fp, write=write)
