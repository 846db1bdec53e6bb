"""The prompt-encoder stages' building blocks (the rules are in ``recommend.steps``): their config sections,
the frozen models and KG, samples and collation, the prompted model, validation and scoring, the saved
model file. Stage 1 is semantic-fusion pre-training (ECR_SPEC 5.1), the UniCRS conversation module (4.7)
writes the responses u_r, stage 2 is emotion-aware recommendation (5.2) with ranked predictions (6.1).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..cooccurrence import CoOccurrence
from ..evaluate import gold_ranks, recommendation_metrics
from ..io import atomic_path
from ..kg import load_kg_tensors
from ..kg.neighbourhood import KGNeighbourhood
from ..models.lm import FrozenModels, load_frozen
from ..train import StageSettings, load_safetensors, mean_loss, validation
from .data import FEEDBACK_CODE, Collator, Sample, TextSide, rec_samples
from .model import PromptedModel, build_prompt_encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseModels:
    """The frozen models of the prompt-encoder stages (``models.plm``, ``models.text_encoder``)."""

    plm: str  # the language model the prompts condition
    text_encoder: str  # encodes the dialogue for the prompt encoder


@dataclass(frozen=True, kw_only=True)
class PromptSettings(StageSettings):
    """The ``pretrain`` section; the keys every prompt-encoder stage reads."""

    max_length: int  # tokens of the dialogue context
    entity_max_length: int
    num_bases: int  # R-GCN basis decomposition
    emotion_dim: int
    emotion_slots: int  # emotions per entity slot
    mask_padding: bool  # false: the reference's unmasked fusion (ECR_SPEC 8.13)
    # true: also mask global-entity slots whose co-occurrence row is empty (the reference attends them)
    mask_empty_global: bool = False
    # which emotions of an entity fill its slots: "first" (lists sorted by probability, emotion.turn_merge
    # max) or "last" (the reference's [-3:] of a concatenation, turn_merge concat); set by the rules
    emotion_keep: str = "first"


@dataclass(frozen=True, kw_only=True)
class ConversationTraining(PromptSettings):
    """The ``conversation`` section without its decoding keys (conversation_train's)."""

    resp_max_length: int
    n_prefix_conv: int


@dataclass(frozen=True, kw_only=True)
class ConversationSettings(ConversationTraining):
    """The whole ``conversation`` section (conversation_generate's)."""

    max_gen_len: int
    no_repeat_ngram_size: int
    gen_batch_size: int


@dataclass(frozen=True, kw_only=True)
class RecommendTraining(PromptSettings):
    """The ``recommend`` section without ``top_k`` (recommend_train's)."""

    n_prefix_rec: int
    use_resp: bool  # u_r in the prompt
    feedback_weights: dict  # like / dislike / not_said -> loss weight (variants with weighted_loss)
    loss_labels: str  # entities | items


@dataclass(frozen=True, kw_only=True)
class RecommendSettings(RecommendTraining):
    """The whole ``recommend`` section (recommend_predict's)."""

    top_k: int  # predictions kept per sample


@dataclass(frozen=True)
class Variant:
    """A prompt-encoder variant (``variants.pretrain.<name>``, ``variants.recommend.<name>``)."""

    emotions: bool  # emotion-aware local entities
    global_entities: bool  # co-occurrence (--nei_mer)
    weighted_loss: bool = False  # feedback-weighted loss (stage 2)
    copy: bool = False  # stage 2: copy mixture over the global entities' rows (models.prompt.copy_scores)
    # stage 2: softmax(a h . E + b), a trainable per-entity b started at log(1 + n_e) (n_e: the entity's count
    # among the training targets) and a trainable scale a started at 0 (popularity_prior)
    popularity_prior: bool = False
    kg_copy: bool = False  # stage 2: the copy mixture also copies from the local entities' KG rows
    pretrain: str | None = None  # the stage-1 variant a stage-2 variant starts from


def fingerprint_params(**parts) -> dict:
    """Dataclasses as dicts, for :func:`ecrflow.train.fingerprint`."""
    return {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in parts.items()}


@dataclass
class Setup:
    frozen: FrozenModels
    kg_meta: dict
    edge_index: torch.Tensor
    edge_type: torch.Tensor

    @property
    def pad_entity(self) -> int:
        return self.kg_meta["pad_entity"]


def load_setup(models: BaseModels, kg_tensors, precision: str = "fp32") -> Setup:
    from ..train import mixed_precision

    edge_index, edge_type, meta = load_kg_tensors(kg_tensors)
    dtype = torch.bfloat16 if mixed_precision(precision) == "bf16" else None
    return Setup(load_frozen(models.plm, models.text_encoder, dtype=dtype), meta, edge_index, edge_type)


def text_sides(setup: Setup, section: PromptSettings) -> tuple[TextSide, TextSide]:
    enc_tok = setup.frozen.encoder_tokenizer
    # The text encoder's input starts with its CLS token (<s> for RoBERTa, [CLS] for BERT; bos if it has no
    # CLS), as the reference inserts cls_token_id after cutting to max_length - 1; the LM's has none.
    lead = enc_tok.cls_token_id if enc_tok.cls_token_id is not None else enc_tok.bos_token_id
    return (TextSide(setup.frozen.lm_tokenizer, section.max_length),
            TextSide(enc_tok, section.max_length, lead_token=lead))


def make_collator(setup: Setup, section: PromptSettings, co: CoOccurrence | None, *, leave_dialog_out: bool = False,
                  left_pad_lm: bool = False, kg: KGNeighbourhood | None = None) -> Collator:
    return Collator(lm_pad=setup.frozen.lm_tokenizer.pad_token_id, enc_pad=setup.frozen.encoder_tokenizer.pad_token_id,
                    pad_entity=setup.pad_entity, emotion_top_n=section.emotion_slots, cooccurrence=co,
                    leave_dialog_out=leave_dialog_out, left_pad_lm=left_pad_lm,
                    emotion_keep=section.emotion_keep, kg=kg)


def build_model(setup: Setup, section: PromptSettings, flags: Variant, *, n_prefix: int, fusion: str, init=None,
                item_ids=None, loss_labels: str = "entities") -> PromptedModel:
    from ..train import seed_everything

    seed_everything(section.seed)  # the initialisation is part of the run: same seed, same model
    prompt = build_prompt_encoder(setup.frozen, setup.kg_meta, setup.edge_index, setup.edge_type,
                                  num_bases=section.num_bases, emotion_dim=section.emotion_dim,
                                  n_prefix=n_prefix, emotions=flags.emotions,
                                  global_entities=flags.global_entities, fusion=fusion,
                                  mask_padding=section.mask_padding, mask_empty_global=section.mask_empty_global,
                                  copy=flags.copy, entity_bias=flags.popularity_prior, kg_copy=flags.kg_copy)
    if init is not None:
        report = prompt.load_compatible(load_safetensors(init))
        log.info("initialised from %s: %d tensors loaded, new: %s, ignored: %s", init, len(report["loaded"]),
                 report["new"] or "none", report["ignored"] or "none")
    ids = torch.as_tensor(item_ids) if item_ids is not None else None
    return PromptedModel(setup.frozen, prompt, item_ids=ids, loss_labels=loss_labels)


def popularity_prior(model: PromptedModel, samples: list[Sample]) -> None:
    """Start the entity bias at log(1 + n_e), n_e the number of training samples whose target is entity e
    (the scale of h . E starts at 0: PromptEncoder).

    On a small training set a frozen LM's last state carries little of the context, and h . E over ~25k
    entities (spread over tens of units at the start) ranks below a plain count of the training targets; so
    stage 2 starts from that count and training lets in as much of h . E as lowers the loss. Both stay
    trainable."""
    targets = torch.as_tensor([s.target for s in samples], dtype=torch.long)
    counts = torch.bincount(targets, minlength=model.prompt.cfg.n_entity).float()
    with torch.no_grad():
        model.prompt.entity_bias.copy_(torch.log1p(counts))


def cooccurrence(flags: Variant, matrix, contributions) -> CoOccurrence | None:
    if not flags.global_entities:
        return None
    if matrix is None:
        raise ValueError("global_entities is on but no co-occurrence matrix was given")
    return CoOccurrence.load(matrix, contributions)


def kg_neighbourhood(flags: Variant, setup: Setup, item_ids) -> KGNeighbourhood | None:
    """The local entities' KG rows over the candidate items, for ``kg_copy``."""
    if not flags.kg_copy:
        return None
    return KGNeighbourhood(setup.edge_index.numpy(), setup.kg_meta["n_entity"], item_ids)


def loader(samples: list[Sample], collate, batch_size: int, accelerator):
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
    """Per-sample loss, gold rank among the items (items scoring strictly higher, and other items tied with
    the gold one: :func:`ecrflow.evaluate.gold_ranks`), gold softmax probability over all entities and the
    top-k items with scores, in sample order (gathered over processes). Logits are fp32 (PromptedModel)."""
    model.eval()
    items = torch.as_tensor(item_ids, device=accelerator.device)
    pos_of = torch.full((model.prompt.cfg.n_entity,), -1, dtype=torch.long, device=accelerator.device)
    pos_of[items] = torch.arange(len(items), device=accelerator.device)
    k = min(top_k, len(item_ids))
    parts: dict[str, list] = {n: [] for n in ("pos", "loss", "rank", "ties", "prob", "top_items", "top_scores")}
    for batch in loader(samples, collate, batch_size, accelerator):
        with accelerator.autocast():
            out = model(batch, "rec")
        logits = out["logits"]
        target = batch["target"]
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        prob = logits.softmax(-1).gather(1, target[:, None]).squeeze(1)
        item_scores = logits[:, items]
        gold_col = pos_of[target]
        ahead, tied = gold_ranks(item_scores.cpu().numpy(), gold_col.clamp(min=0).cpu().numpy(), ties=True)
        not_item = gold_col.cpu() < 0  # a gold entity outside the candidates: never ranked
        rank = torch.where(not_item, len(item_ids), torch.from_numpy(ahead)).to(logits.device)
        ties = torch.where(not_item, 0, torch.from_numpy(tied)).to(logits.device)
        top_s, top_i = item_scores.topk(k, dim=1)
        for name, t in (("pos", batch["pos"]), ("loss", ce), ("rank", rank), ("ties", ties), ("prob", prob),
                        ("top_items", items[top_i]), ("top_scores", top_s)):
            parts[name].append(accelerator.gather_for_metrics(t.contiguous()).cpu())
    merged = {n: torch.cat(v).numpy() for n, v in parts.items()}
    order = np.argsort(merged.pop("pos"), kind="stable")
    return {n: v[order] for n, v in merged.items()}


def validation_loss(ce: np.ndarray, weights: np.ndarray, batch_size: int) -> float:
    """The reference's validation loss (train_rec.py, train_pre.py): the mean over consecutive batches of
    ``batch_size`` samples of each batch's loss, the weighted mean of w_i CE_i (Eq. 7; w = 1 when the
    variant is unweighted), so a weighted variant's best epoch is chosen by the loss it trains on."""
    wl = np.asarray(ce, dtype=np.float64) * np.asarray(weights, dtype=np.float64)
    return float(np.mean([wl[lo:lo + batch_size].mean() for lo in range(0, len(wl), batch_size)]))


def rec_validation(model, samples, collate, section: PromptSettings, item_ids, accelerator, ks=(1, 10, 50)):
    """Per-epoch validation of stages 1 and 2: the loss (:func:`validation_loss`, what ``select_metric:
    loss`` minimises), the unweighted mean cross-entropy ``ce``, Recall@k and AUC of the ranked samples."""
    def measure(samples) -> dict:
        s = score_samples(model, samples, collate, batch_size=section.eval_batch_size, item_ids=item_ids,
                          top_k=max(ks), accelerator=accelerator)
        fb = np.array([FEEDBACK_CODE[x.feedback] for x in samples])
        metrics = recommendation_metrics(s["rank"], fb, s["prob"], ks=ks, ties=s["ties"])
        keep = {k: v for k, v in metrics.items() if k.startswith(("recall@", "auc"))}
        loss = validation_loss(s["loss"], np.array([x.weight for x in samples]), section.eval_batch_size)
        return {"loss": loss, "ce": float(s["loss"].mean()), **keep}
    return validation(samples, measure, empty={"loss": None})


def conversation_validation(model, samples, collate, section: PromptSettings, accelerator):
    """The conversation module's validation: the mean loss over the batches (split over the processes)."""
    def measure(samples) -> dict:
        batches = loader(samples, collate, section.eval_batch_size, accelerator)
        return {"loss": mean_loss(model, batches, task="conv", accelerator=accelerator, sharded=True)}
    return validation(samples, measure, empty={"loss": None})


def write_model(path, state: dict, cfg, extra: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata={"prompt_config": json.dumps(cfg.to_dict()), **extra})


RESPONSE_SCHEMA = pa.schema([("dialog_id", pa.string()), ("turn", pa.int32()), ("resp", pa.string())])


def load_responses(path) -> dict[tuple[str, int], str]:
    t = pq.read_table(path)
    return {(d, int(k)): r for d, k, r in zip(t.column("dialog_id").to_pylist(), t.column("turn").to_pylist(),
                                             t.column("resp").to_pylist())}


def rec_inputs(setup, section: RecommendTraining, flags: Variant, table_path, responses_path) -> list[Sample]:
    lm, enc = text_sides(setup, section)
    weights = section.feedback_weights if flags.weighted_loss else None
    responses = load_responses(responses_path) if (section.use_resp and responses_path) else None
    return rec_samples(pq.read_table(table_path), lm, enc, section.entity_max_length, feedback_weights=weights,
                       responses=responses)


PREDICTION_SCHEMA = pa.schema([
    ("dialog_id", pa.string()),
    ("turn", pa.int32()),
    ("item", pa.int64()),  # the gold item of the sample
    ("feedback", pa.string()),
    ("gold_rank", pa.int32()),  # 0-based rank of the gold item among all items: the items scoring higher
    ("gold_ties", pa.int32()),  # other items with the gold item's score (metrics: expectation over their order)
    ("gold_prob", pa.float32()),  # softmax over all entities at the gold item (the AUC score, ECR_SPEC 6.1)
    ("loss", pa.float32()),
    ("top_items", pa.list_(pa.int64())),
    ("top_scores", pa.list_(pa.float32())),
])


def metrics_from_predictions(path, *, ks, auc_batch_size: int) -> dict:
    t = pq.read_table(path)
    fb = np.array([FEEDBACK_CODE[x] for x in t.column("feedback").to_pylist()])
    ties = t.column("gold_ties").to_numpy() if "gold_ties" in t.column_names else None  # older files: none
    return recommendation_metrics(t.column("gold_rank").to_numpy(), fb, t.column("gold_prob").to_numpy(),
                                  ks=tuple(ks), auc_batch_size=auc_batch_size, ties=ties)
