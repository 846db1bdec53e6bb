"""The prompt encoder (ECR_SPEC 4.2-4.3, UniCRS ``KGPrompt`` extended by ECR): the only trainable module of
stage 1, the conversation module and stage 2.

It turns a batch (context token states of the frozen text encoder, context entities with their emotions,
their co-occurrence rows) into per-layer key/value prefixes for the frozen language model, and exposes the
entity table that scores the recommendation.

Differences from the reference, each a fix named in ECR_SPEC 8:
- the knowledge graph lives in registered (non-persistent) buffers, so ``.to(device)`` moves it (8.2), and
  the RGCN entity table is computed once per step by the caller and passed around (8.13: the reference
  recomputes it three times per step);
- global entities are a sparse (B*L x n_ent) matrix times the entity table, never a dense B x L x n_ent
  tensor (8.5);
- padded tokens and padded entity slots are masked in the fusion and in the prefix (8.13); ``mask_padding:
  false`` restores the reference's unmasked behaviour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..constants import EMOTION_PAD, EMOTIONS
from .rgcn import BasisRGCN


@dataclass(frozen=True)
class PromptConfig:
    n_entity: int
    n_relation: int
    lm_hidden: int  # d: hidden size of the frozen language model
    text_hidden: int  # hidden size of the frozen text encoder
    n_layer: int  # language-model layers that receive a prefix
    n_kv_head: int
    head_dim: int
    num_bases: int = 8
    emotion_dim: int = 48  # d/16 in the paper
    n_prefix: int = 0  # soft tokens: 10 for recommendation, 20 for conversation, 0 in pre-training
    emotions: bool = True  # emotion-aware entities (Eq. 3-4)
    global_entities: bool = True  # co-occurrence entities (Eq. 5)
    fusion: str = "entity"  # "entity": entity-centred (recommendation) | "token": token-centred (conversation)
    mask_padding: bool = True
    mask_empty_global: bool = False  # with mask_padding: also mask global slots with an empty co-occurrence row
    # Stage 2: score with a copy mixture over the global entities' co-occurrence rows besides h . E (see
    # PromptEncoder.copy_scores); needs global_entities.
    copy: bool = False
    # Stage 2: score a h . E + b, a trainable scale started at 0 and a per-entity bias (PromptEncoder).
    entity_bias: bool = False
    # Stage 2: the copy mixture also copies from the local entities' KG rows (kg.neighbourhood: the items a
    # one- or two-step walk on the KG reaches).
    kg_copy: bool = False

    def __post_init__(self):
        if self.copy and not self.global_entities:
            raise ValueError("copy scores mix the global entities' co-occurrence rows: it needs global_entities")

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualMLP(nn.Module):
    """x + W2 relu(W1 x): the ``*_proj1`` blocks of the reference."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


@dataclass
class Prefix:
    """Per-layer prefixes: ``key``/``value`` of shape (n_layer, B, n_kv_head, P, head_dim), and the (B, P)
    mask of prefix positions the language model may attend to. ``emotion``: the (B, L, emotion_dim) emotion
    vectors of the local entities when the prompt uses emotions (the copy mixture's slot weights read them).
    """

    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor
    emotion: torch.Tensor | None = None


class PromptEncoder(nn.Module):
    def __init__(self, cfg: PromptConfig, edge_index: torch.Tensor, edge_type: torch.Tensor):
        super().__init__()
        from torch_geometric.nn import RGCNConv

        self.cfg = cfg
        d, d_ent, d_text = cfg.lm_hidden, cfg.lm_hidden // 2, cfg.text_hidden
        self.node_embeds = nn.Parameter(torch.empty(cfg.n_entity, d_ent))
        nn.init.xavier_uniform_(self.node_embeds)
        # PyG's RGCNConv parameters, evaluated as basis-wise sparse products (models.rgcn: same function, a
        # fraction of the memory). The graph lives in non-persistent buffers: checkpoints hold parameters
        # only, the graph comes from the KG files, and .to(device) moves it.
        self.kg_encoder = RGCNConv(d_ent, d_ent, num_relations=cfg.n_relation, num_bases=cfg.num_bases)
        self.kg = BasisRGCN(self.kg_encoder, edge_index, edge_type, cfg.n_entity)
        self.entity_proj1 = ResidualMLP(d_ent, d_ent // 2)
        self.entity_proj2 = nn.Linear(d_ent, d)
        self.token_proj1 = ResidualMLP(d_text, d_text // 2)
        self.token_proj2 = nn.Linear(d_text, d)
        self.cross_attn = nn.Linear(d, d, bias=False)
        if cfg.emotions:
            self.emo_embeds = nn.Parameter(torch.empty(len(EMOTIONS) + 1, d))
            nn.init.xavier_uniform_(self.emo_embeds)
            self.emo_proj1 = ResidualMLP(d, d // 2)
            self.emo_proj2 = nn.Linear(d, cfg.emotion_dim)
            # No residual here, as in the reference (Eq. 4).
            self.emo_fuse_proj1 = nn.Sequential(nn.Linear(d + cfg.emotion_dim, d), nn.ReLU(),
                                                nn.Linear(d, d + cfg.emotion_dim))
            self.emo_fuse_proj2 = nn.Linear(d + cfg.emotion_dim, d)
        if cfg.n_prefix:
            self.prefix_embeds = nn.Parameter(torch.randn(cfg.n_prefix, d))
            self.prefix_proj = ResidualMLP(d, d // 2)
        self.prompt_proj1 = ResidualMLP(d, d // 2)
        self.prompt_proj2 = nn.Linear(d, cfg.n_layer * 2 * cfg.n_kv_head * cfg.head_dim)
        if cfg.copy:
            # How much of the recommendation is copied (a gate read from h), and from which context entity
            # (a weight read from the entity's emotion vector: the reference's copy_proj on v_l).
            self.copy_gate = nn.Linear(d, 1)
            if cfg.emotions:
                self.copy_slot = nn.Sequential(nn.Linear(cfg.emotion_dim, cfg.emotion_dim), nn.ReLU(),
                                               nn.Linear(cfg.emotion_dim, 1))
        if cfg.kg_copy:  # the same two reads for the KG rows, with their own weights
            self.kg_gate = nn.Linear(d, 1)
            if cfg.emotions:
                self.kg_slot = nn.Sequential(nn.Linear(cfg.emotion_dim, cfg.emotion_dim), nn.ReLU(),
                                             nn.Linear(cfg.emotion_dim, 1))
        if cfg.entity_bias:
            # softmax(a h . E + b): b starts at the log training popularity (recommend.training.popularity_prior)
            # and a at 0, so stage 2 starts from a popularity ranking and h . E enters as far as training
            # finds that the context adds to it (a residual on the prior, like a zero-initialised adapter).
            self.entity_bias = nn.Parameter(torch.zeros(cfg.n_entity))
            self.entity_scale = nn.Parameter(torch.zeros(()))

    # -- pieces -------------------------------------------------------------------------------------------
    def entity_table(self) -> torch.Tensor:
        """E (n_ent x d): RGCN over the whole graph plus projections. Call once per step and pass it on."""
        x = self.node_embeds
        h = self.kg(self.kg_encoder, x) + x
        return self.entity_proj2(self.entity_proj1(h))

    def emotion_table(self) -> torch.Tensor:
        """V (10 x d_emo): one vector per emotion label, the last one for padding."""
        return self.emo_proj2(self.emo_proj1(self.emo_embeds))

    def emotion_vectors(self, emo_ids: torch.Tensor, emo_probs: torch.Tensor) -> torch.Tensor:
        """Eq. 3: sum_k p_k V[id_k] per entity slot (B x L x K ids/probs -> B x L x d_emo)."""
        table = self.emotion_table()
        return torch.einsum("blk,blkd->bld", emo_probs.to(table.dtype), table[emo_ids])

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, *, entity_table: torch.Tensor, token_states: torch.Tensor, token_mask: torch.Tensor,
                entity_ids: torch.Tensor, entity_mask: torch.Tensor, emotion_ids: torch.Tensor | None = None,
                emotion_probs: torch.Tensor | None = None, global_rows: torch.Tensor | None = None,
                has_global: torch.Tensor | None = None) -> Prefix:
        """Prefix for one batch.

        token_states (B x T x d_text) and token_mask (B x T) come from the frozen text encoder; entity_ids
        and entity_mask are B x L (padded with the pad entity); emotion_ids/probs B x L x K; global_rows a
        sparse (B*L x n_ent) tensor of row-normalised co-occurrence rows, has_global (B x L) whether a row
        is non-empty.
        """
        cfg = self.cfg
        b, n_slots = entity_ids.shape
        mask_pad = cfg.mask_padding
        local_emotion = None
        local = entity_table[entity_ids]  # B x L x d
        tokens = self.token_proj2(self.token_proj1(token_states))  # B x T x d
        # UniCRS bilinear fusion, scaled by 1/d as the reference does.
        attn = self.cross_attn(tokens) @ local.transpose(1, 2) / tokens.shape[-1]  # B x T x L
        neg = torch.finfo(attn.dtype).min
        if cfg.fusion == "entity":
            if mask_pad:
                attn = attn.masked_fill(~token_mask.bool()[:, :, None], neg)
            weights = attn.softmax(dim=1)  # over tokens
            slots = weights.transpose(1, 2) @ tokens + local  # B x L x d
            slot_mask = entity_mask.bool()
            if cfg.global_entities:
                if global_rows is None:
                    raise ValueError("global_entities is on but the batch carries no co-occurrence rows")
                glob = torch.sparse.mm(global_rows.to(entity_table.dtype), entity_table).view(b, n_slots, -1)
                slots = torch.cat([slots, glob.to(slots.dtype)], dim=1)
                # The reference fuses and attends an empty row's (zero) global slot; masking it is a switch.
                glob_mask = slot_mask & has_global.bool() if cfg.mask_empty_global else slot_mask
                slot_mask = torch.cat([slot_mask, glob_mask], dim=1)
            if cfg.emotions:
                emo = local_emotion = self.emotion_vectors(emotion_ids, emotion_probs)
                if cfg.global_entities:
                    emo = torch.cat([emo, emo], dim=1)  # each global slot gets its local entity's emotion
                fused = torch.cat([slots, emo.to(slots.dtype)], dim=-1)
                slots = self.emo_fuse_proj2(self.emo_fuse_proj1(fused))
        elif cfg.fusion == "token":
            if mask_pad:
                attn = attn.masked_fill(~entity_mask.bool()[:, None, :], neg)
            weights = attn.softmax(dim=2)  # over entities
            slots = weights @ local + tokens  # B x T x d
            slot_mask = token_mask.bool()
        else:
            raise ValueError(f"unknown fusion {cfg.fusion!r} (entity | token)")
        if not mask_pad:
            slot_mask = torch.ones_like(slot_mask)
        if cfg.n_prefix:
            soft = self.prefix_proj(self.prefix_embeds).expand(b, -1, -1)
            slots = torch.cat([soft.to(slots.dtype), slots], dim=1)
            slot_mask = torch.cat([slot_mask.new_ones(b, cfg.n_prefix), slot_mask], dim=1)
        out = self.prompt_proj2(self.prompt_proj1(slots))  # B x P x (layers*2*heads*hd)
        p = out.shape[1]
        out = out.view(b, p, cfg.n_layer, 2, cfg.n_kv_head, cfg.head_dim).permute(2, 3, 0, 4, 1, 5)
        return Prefix(key=out[:, 0], value=out[:, 1], mask=slot_mask, emotion=local_emotion)

    def copy_scores(self, h: torch.Tensor, logits: torch.Tensor, *, entity_mask: torch.Tensor,
                    global_rows: torch.Tensor | None = None, has_global: torch.Tensor | None = None,
                    kg_rows: torch.Tensor | None = None, has_kg: torch.Tensor | None = None,
                    emotion: torch.Tensor | None = None) -> torch.Tensor:
        """log p over all entities (B x n_ent, fp32), p = w_0 softmax(logits) + w_c sum_l a_l N_l (``copy``)
        + w_k sum_l a'_l K_l (``kg_copy``); ``logits`` are h . E, or a h . E + b with the popularity prior.

        N_l is local entity l's row-normalised co-occurrence row and K_l its KG row (kg.neighbourhood), each a
        distribution over entities (sparse B*L x n_ent, ``has_*`` B x L whether the row is non-empty). a_l
        is a softmax over the context entities that have a row, read from their emotion vectors ``emotion``
        (B x L x emotion_dim, as the prefix computed them; uniform without emotions), a'_l the same with
        its own weights. The shares w are a softmax over (0, w_c . h + b_c, w_k . h + b_k), a share dropped
        where a sample has no such row, so a sample with neither keeps plain softmax(h . E); with one
        source, w_c = sigmoid(w_c . h + b_c).
        The reference's ``--copy`` adds 0.5 sum_l MLP(v_l) N_l to the logits instead; a mixture of
        distributions needs no scale to be learnt (N's entries are ~1/row support, the logits' spread is
        several units), so a few hundred steps suffice."""
        cfg = self.cfg
        if cfg.emotions and emotion is None:
            raise ValueError("the copy slot weights read the local entities' emotion vectors: pass emotion")
        b = logits.shape[0]
        parts = [logits.float().log_softmax(dim=-1)]
        shares = [torch.zeros(b, 1, device=logits.device)]
        present = [torch.ones(b, 1, dtype=torch.bool, device=logits.device)]
        sources = (("copy", "co-occurrence", global_rows, has_global, "copy_gate", "copy_slot"),
                   ("kg_copy", "KG", kg_rows, has_kg, "kg_gate", "kg_slot"))
        for flag, what, rows, has, gate, slot_net in sources:
            if not getattr(cfg, flag):
                continue
            if rows is None or has is None:
                raise ValueError(f"{flag} is on but the batch carries no {what} rows")
            valid = entity_mask.bool() & has.bool()
            slot_weight = getattr(self, slot_net)(emotion.float()).squeeze(-1) if cfg.emotions else None
            dist = self._slot_mixture(rows, valid, slot_weight, logits.shape[1])
            parts.append(dist.clamp_min(1e-30).log())
            shares.append(getattr(self, gate)(h.float()))
            present.append(valid.any(dim=1, keepdim=True))
        log_w = torch.cat(shares, dim=1).masked_fill(~torch.cat(present, dim=1), float("-inf")).log_softmax(dim=1)
        return torch.logsumexp(log_w[:, :, None] + torch.stack(parts, dim=1), dim=1)

    @staticmethod
    def _slot_mixture(rows: torch.Tensor, valid: torch.Tensor, slot_weight: torch.Tensor | None,
                      n_out: int) -> torch.Tensor:
        """sum_l a_l R_l (B x n_out): a = softmax of ``slot_weight`` (B x L; uniform when None) over the
        ``valid`` slots, R the sparse (B*L x n_out) rows."""
        b, n_slots = valid.shape
        weight = torch.zeros(b, n_slots, device=valid.device) if slot_weight is None else slot_weight
        slot = weight.masked_fill(~valid, torch.finfo(weight.dtype).min).softmax(dim=1)  # B x L
        rows = rows.coalesce()
        r, c = rows.indices()
        mass = rows.values().float() * slot.reshape(-1)[r]
        return torch.zeros(b, n_out, device=valid.device).index_put((r // n_slots, c), mass, accumulate=True)

    # -- checkpoints --------------------------------------------------------------------------------------
    def load_compatible(self, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """Load the parameters a checkpoint shares with this module (same name and shape); new parts, such
        as the soft tokens of stage 2 on top of a stage-1 checkpoint, keep their initialisation. Returns
        what was loaded and what was not, for the log."""
        own = self.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(usable, strict=False)
        return {"loaded": sorted(usable), "new": sorted(set(own) - set(usable)),
                "ignored": sorted(set(state) - set(usable))}


def emotion_slot_tensors(labels: list[list[list[str]]], probs: list[list[list[float]]], n_slots: int,
                         top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B x L x K label ids (padded with EMOTION_PAD) and probabilities (padded with 0) from per-entity lists;
    the first ``top_n`` labels of each entity are kept (lists are sorted by probability upstream)."""
    from ..constants import EMOTION_INDEX

    b = len(labels)
    ids = torch.full((b, n_slots, top_n), EMOTION_PAD, dtype=torch.long)
    ps = torch.zeros((b, n_slots, top_n), dtype=torch.float32)
    for i, (lab_i, p_i) in enumerate(zip(labels, probs)):
        for j, (lab, p) in enumerate(zip(lab_i, p_i)):
            k = min(len(lab), top_n)
            if k:
                ids[i, j, :k] = torch.tensor([EMOTION_INDEX[x] for x in lab[:k]])
                ps[i, j, :k] = torch.tensor(p[:k])
    return ids, ps
