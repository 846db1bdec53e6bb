"""The trainable prompt encoder wired to the frozen language model and text encoder, for the three
prompt-encoder stages: stage 1 and stage 2 (entity scores, Eq. 6-7) and the conversation module (LM loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.lm import FrozenModels, last_hidden, prefixed_forward
from ..models.prompt import Prefix, PromptConfig, PromptEncoder


def build_prompt_encoder(frozen: FrozenModels, kg_meta: dict, edge_index, edge_type, **options) -> PromptEncoder:
    shape = frozen.lm_shape
    cfg = PromptConfig(n_entity=kg_meta["n_entity"], n_relation=kg_meta["n_relation"], lm_hidden=shape["hidden"],
                       text_hidden=frozen.encoder.config.hidden_size, n_layer=shape["n_layer"],
                       n_kv_head=shape["n_kv_head"], head_dim=shape["head_dim"], **options)
    return PromptEncoder(cfg, edge_index, edge_type)


class PromptedModel(nn.Module):
    """Frozen LM + frozen text encoder + trainable prompt encoder. Only ``prompt`` has trainable parameters,
    and only its state is checkpointed (``trainable_state``)."""

    def __init__(self, frozen: FrozenModels, prompt: PromptEncoder, *, item_ids: torch.Tensor | None = None,
                 loss_labels: str = "entities"):
        super().__init__()
        self.lm = frozen.lm
        self.encoder = frozen.encoder
        self.prompt = prompt
        self.loss_labels = loss_labels
        n = prompt.cfg.n_entity
        is_item = torch.zeros(n, dtype=torch.bool)
        if item_ids is not None:
            is_item[item_ids] = True
        self.register_buffer("is_item", is_item, persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.lm.eval()  # frozen models never use dropout
        self.encoder.eval()
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.prompt.state_dict().items()}

    def prefix(self, batch: dict, entity_table: torch.Tensor) -> Prefix:
        with torch.no_grad():
            states = self.encoder(input_ids=batch["enc_ids"], attention_mask=batch["enc_mask"]).last_hidden_state
        return self.prompt(entity_table=entity_table, token_states=states, token_mask=batch["enc_mask"],
                           entity_ids=batch["entity_ids"], entity_mask=batch["entity_mask"],
                           emotion_ids=batch["emotion_ids"], emotion_probs=batch["emotion_probs"],
                           global_rows=batch.get("global_rows"), has_global=batch.get("has_global"))

    def forward(self, batch: dict, task: str = "rec") -> dict:
        table = self.prompt.entity_table()  # once per step
        prefix = self.prefix(batch, table)
        if task == "rec":
            h = last_hidden(self.lm, prefix, batch["lm_ids"], batch["lm_mask"])
            # Scores over all entities (ECR_SPEC 4.3 step 11) in fp32 whatever the training precision: bf16
            # logits fall on a coarse grid and tie (the reference runs fp32); autocast would recast the matmul.
            with torch.autocast(device_type=h.device.type, enabled=False):
                logits = h.float() @ table.float().t()
                if self.prompt.cfg.entity_bias:
                    logits = self.prompt.entity_scale.float() * logits + self.prompt.entity_bias.float()
                # The copy mixture gives log-probabilities: CE, softmax and rankings read them alike.
                if self.prompt.cfg.copy or self.prompt.cfg.kg_copy:
                    logits = self.prompt.copy_scores(
                        h, logits, entity_mask=batch["entity_mask"], global_rows=batch.get("global_rows"),
                        has_global=batch.get("has_global"), kg_rows=batch.get("kg_rows"),
                        has_kg=batch.get("has_kg"), emotion=prefix.emotion)
            train_logits = logits
            if self.loss_labels == "items":  # ECR_SPEC 8.12 ablation: the loss over the candidate items only
                train_logits = logits.masked_fill(~self.is_item, torch.finfo(logits.dtype).min)
            ce = F.cross_entropy(train_logits, batch["target"], reduction="none")
            loss = (batch["weight"] * ce).mean()  # Eq. 7; weight 1 when unweighted
            return {"loss": loss, "logits": logits}
        if task == "conv":
            out = prefixed_forward(self.lm, prefix, batch["lm_ids"], batch["lm_mask"])
            logits = out.logits[:, :-1].float()
            labels = batch["labels"][:, 1:]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
            return {"loss": loss}
        raise ValueError(f"unknown task {task!r}")
