"""Training and evaluation samples of the prompt-encoder stages, built from the processed Parquet tables,
and their collation into tensors.

- stage 1 (ECR_SPEC 5.1): one sample per (turn with entities in ``rec``, entity), both roles; the context
  includes the current turn;
- stage 2 (5.2): one sample per (recommender turn with a context, recommended movie), with its feedback;
  optionally the UniCRS response u_r appended to the context (``use_resp``);
- conversation module (4.7): one sample per recommender turn with a context, the masked response as target.

Every sample keeps its ``dialog_id`` and ``turn`` so that predictions and responses are written with keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import torch

from ..constants import MOVIE_TOKEN, RECOMMENDER
from ..cooccurrence import CoOccurrence
from ..data.turns import SPEAKER_TAGS, serialise_context
from ..kg.neighbourhood import KGNeighbourhood
from ..models.prompt import emotion_slot_tensors

FEEDBACK_CODE = {"like": 1, "dislike": 0, "not_said": -1}  # the evaluator's codes (ECR_SPEC 6.1)


@dataclass
class Sample:
    dialog_id: str
    turn: int
    lm_ids: list[int]
    enc_ids: list[int]
    entity: list[int]
    emotions: list[list[str]]
    emotion_probs: list[list[float]]
    target: int = -1
    feedback: str = "not_said"
    weight: float = 1.0
    labels: list[int] | None = None  # conversation module: -100 on context tokens


@dataclass
class TextSide:
    """How contexts become token ids for one model: the tokenizer, its separator, the length cap and the
    token every input starts with (the text encoder's CLS; None for the language model)."""

    tokenizer: object
    max_length: int
    lead_token: int | None = None

    @property
    def sep(self) -> str:
        t = self.tokenizer
        return t.sep_token or t.eos_token

    def encode_left(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids keeping the last ``max_length`` (left truncation, as the reference: the most recent
        turns matter); with ``lead_token``, the last ``max_length - 1`` after it, as the reference inserts
        cls_token_id in front of the text encoder's input (dataset_pre.py, dataset_rec.py)."""
        cap = max_length or self.max_length
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        if self.lead_token is None:
            return [ids[-cap:] for ids in enc]
        return [[self.lead_token] + (ids[-(cap - 1):] if cap > 1 else []) for ids in enc]


def _last(xs: list, n: int) -> list:
    return list(xs[-n:]) if n else []


def pretrain_samples(table: pa.Table, lm: TextSide, enc: TextSide, entity_max_length: int) -> list[Sample]:
    rows = [r for r in table.to_pylist() if r["rec"]]
    lm_texts = [serialise_context(r["context"] + [r["resp"]], r["context_roles"] + [r["role"]], lm.sep) for r in rows]
    enc_texts = [serialise_context(r["context"] + [r["resp"]], r["context_roles"] + [r["role"]], enc.sep) for r in rows]
    lm_ids, enc_ids = lm.encode_left(lm_texts), enc.encode_left(enc_texts)
    out = []
    for r, li, ei in zip(rows, lm_ids, enc_ids):
        for target in r["rec"]:
            out.append(Sample(r["dialog_id"], r["turn"], li, ei, _last(r["entity"], entity_max_length),
                              _last(r["entity_emotions"], entity_max_length),
                              _last(r["entity_emotion_probs"], entity_max_length), target=target))
    return out


def rec_samples(table: pa.Table, lm: TextSide, enc: TextSide, entity_max_length: int, *,
                feedback_weights: dict[str, float] | None, responses: dict[tuple[str, int], str] | None = None
                ) -> list[Sample]:
    """Stage-2 samples; ``feedback_weights`` None means unweighted (weight 1); ``responses`` maps
    (dialog_id, turn) to the UniCRS response u_r, appended to the context as the system's turn.

    As the reference (merge.py, dataset_rec.py): a u_r without ``<movie>`` is blanked, and the "System: "
    tag is appended even when u_r is empty."""
    rows = [r for r in table.to_pylist() if r["rec"] and r["context"]]
    lm_texts, enc_texts = [], []
    for r in rows:
        lm_text = serialise_context(r["context"], r["context_roles"], lm.sep)
        enc_text = serialise_context(r["context"], r["context_roles"], enc.sep)
        if responses is not None:
            key = (r["dialog_id"], r["turn"])
            if key not in responses:
                raise KeyError(f"no UniCRS response for dialog {key[0]} turn {key[1]}")
            resp = responses[key] if MOVIE_TOKEN in responses[key] else ""
            tag = f"{SPEAKER_TAGS[RECOMMENDER]}: {resp}"
            lm_text, enc_text = lm_text + tag + lm.sep, enc_text + tag + enc.sep
        lm_texts.append(lm_text)
        enc_texts.append(enc_text)
    lm_ids, enc_ids = lm.encode_left(lm_texts), enc.encode_left(enc_texts)
    out = []
    for r, li, ei in zip(rows, lm_ids, enc_ids):
        for target, fb in zip(r["rec"], r["rec_feedback"]):
            w = feedback_weights[fb] if feedback_weights else 1.0
            out.append(Sample(r["dialog_id"], r["turn"], li, ei, _last(r["entity"], entity_max_length),
                              _last(r["entity_emotions"], entity_max_length),
                              _last(r["entity_emotion_probs"], entity_max_length), target=target, feedback=fb,
                              weight=w))
    return out


def conversation_samples(table: pa.Table, lm: TextSide, enc: TextSide, entity_max_length: int, *,
                         resp_max_length: int, for_generation: bool) -> list[Sample]:
    """Conversation-module samples: context + "System: " (+ masked response + eos when training)."""
    rows = [r for r in table.to_pylist() if r["context"]]
    tag = f"{SPEAKER_TAGS[RECOMMENDER]}:"
    ctx_lm = lm.encode_left([serialise_context(r["context"], r["context_roles"], lm.sep) + tag for r in rows])
    ctx_enc = enc.encode_left([serialise_context(r["context"], r["context_roles"], enc.sep) for r in rows])
    resp = lm.encode_left([" " + r["resp"] for r in rows], resp_max_length) if not for_generation else None
    eos = lm.tokenizer.eos_token_id
    out = []
    for k, (r, ci, ei) in enumerate(zip(rows, ctx_lm, ctx_enc)):
        s = Sample(r["dialog_id"], r["turn"], ci, ei, _last(r["entity"], entity_max_length),
                   _last(r["entity_emotions"], entity_max_length), _last(r["entity_emotion_probs"], entity_max_length))
        if resp is not None:
            target = resp[k][: resp_max_length - 1] + [eos]
            s.lm_ids = ci + target
            s.labels = [-100] * len(ci) + target
        out.append(s)
    return out


# -- collation ------------------------------------------------------------------------------------------------

def _pad(seqs: list[list[int]], value: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), n), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        sl = slice(n - len(s), n) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s)
        mask[i, sl] = 1
    return ids, mask


@dataclass
class Collator:
    """Turns a list of samples into the tensors of one step. With ``cooccurrence`` set, it adds each local
    entity's global row as a sparse (B*L x n_ent) tensor; ``leave_dialog_out`` subtracts the sample's own
    dialog from those rows (training samples only). With ``kg`` set, it adds each local entity's KG row."""

    lm_pad: int
    enc_pad: int
    pad_entity: int
    emotion_top_n: int = 3
    cooccurrence: CoOccurrence | None = None
    leave_dialog_out: bool = False
    kg: KGNeighbourhood | None = None  # with it, each local entity's KG row (kg_copy)
    left_pad_lm: bool = False  # generation pads on the left
    emotion_keep: str = "first"  # "last": an entity's last emotion_top_n labels (the reference's [-3:])
    _normalised: sp.csr_matrix | None = field(default=None, init=False, repr=False)

    def _global_rows(self, samples: list[Sample], n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        co = self.cooccurrence
        if self._normalised is None and not self.leave_dialog_out:
            self._normalised = co.normalised()

        def rows(s: Sample, ids: np.ndarray) -> sp.csr_matrix:
            return co.rows(ids, exclude_dialog=s.dialog_id) if self.leave_dialog_out else self._normalised[ids]

        return _slot_rows(samples, n_slots, co.n_entity, rows)

    def _kg_rows(self, samples: list[Sample], n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _slot_rows(samples, n_slots, self.kg.n_entity, lambda s, ids: self.kg.rows(ids))

    def __call__(self, samples: list[Sample]) -> dict:
        lm_ids, lm_mask = _pad([s.lm_ids for s in samples], self.lm_pad, left=self.left_pad_lm)
        enc_ids, enc_mask = _pad([s.enc_ids for s in samples], self.enc_pad)
        ent, ent_mask = _pad([s.entity for s in samples], self.pad_entity)
        n_slots = ent.shape[1]
        labels, probs = [s.emotions for s in samples], [s.emotion_probs for s in samples]
        if self.emotion_keep == "last":  # emotion_slot_tensors keeps the first top_n: hand it the last ones
            n = self.emotion_top_n
            labels = [[lab[-n:] for lab in per] for per in labels]
            probs = [[p[-n:] for p in per] for per in probs]
        elif self.emotion_keep != "first":
            raise ValueError(f"emotion_keep {self.emotion_keep!r} (first | last)")
        emo_ids, emo_probs = emotion_slot_tensors(labels, probs, n_slots, self.emotion_top_n)
        batch = {
            "lm_ids": lm_ids, "lm_mask": lm_mask, "enc_ids": enc_ids, "enc_mask": enc_mask,
            "entity_ids": ent, "entity_mask": ent_mask, "emotion_ids": emo_ids, "emotion_probs": emo_probs,
            "target": torch.tensor([s.target for s in samples], dtype=torch.long),
            "weight": torch.tensor([s.weight for s in samples], dtype=torch.float32),
            "index": [(s.dialog_id, s.turn) for s in samples],
        }
        if samples[0].labels is not None:
            batch["labels"], _ = _pad([s.labels for s in samples], -100)
        if self.cooccurrence is not None:
            batch["global_rows"], batch["has_global"] = self._global_rows(samples, n_slots)
        if self.kg is not None:
            batch["kg_rows"], batch["has_kg"] = self._kg_rows(samples, n_slots)
        return batch


def _slot_rows(samples: list[Sample], n_slots: int, n_entity: int, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per entity slot, ``rows(sample, entity ids)`` for a sample's entities and empty rows for its
    padding, as a sparse (B*L x n_entity) tensor, and (B x L) whether each row is non-empty."""
    blocks = []
    for s in samples:
        if not s.entity:
            blocks.append(sp.csr_matrix((n_slots, n_entity), dtype=np.float32))
            continue
        ids = np.asarray(s.entity)
        pad = sp.csr_matrix((n_slots - len(ids), n_entity), dtype=np.float32)
        blocks.append(sp.vstack([rows(s, ids), pad], format="csr"))
    m = sp.vstack(blocks, format="coo")
    has = torch.from_numpy(np.asarray((sp.csr_matrix(m).getnnz(axis=1) > 0)).reshape(len(samples), n_slots))
    idx = torch.from_numpy(np.vstack([m.row, m.col]).astype(np.int64))
    t = torch.sparse_coo_tensor(idx, torch.from_numpy(m.data.astype(np.float32)), m.shape,
                                check_invariants=False).coalesce()
    return t, has
