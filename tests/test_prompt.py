"""The prompt encoder and prefix injection into an unmodified Hugging Face causal LM."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ecrflow.constants import EMOTION_PAD
from ecrflow.models.lm import greedy_generate, last_hidden, prefix_cache, prefixed_forward
from ecrflow.models.prompt import Prefix, emotion_slot_tensors
from ecrflow.recommend.model import PromptedModel, build_prompt_encoder


def _batch(frozen, pad_entity, *, entities=((1, 2, 3), (4,)), global_rows=None):
    tok = frozen.lm_tokenizer
    texts = ["User: I want a comedy<|endoftext|>", "System: try <movie><|endoftext|>User: ok"]
    lm = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    enc = [frozen.encoder_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    n_t, n_e, n_l = max(map(len, lm)), max(map(len, enc)), max(map(len, entities))

    def pad(seqs, n, value):
        ids = torch.full((len(seqs), n), value)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return ids, mask

    lm_ids, lm_mask = pad(lm, n_t, tok.pad_token_id)
    enc_ids, enc_mask = pad(enc, n_e, frozen.encoder_tokenizer.pad_token_id)
    ent, ent_mask = pad([list(e) for e in entities], n_l, pad_entity)
    emo_ids, emo_probs = emotion_slot_tensors([[["like", "happy"]] * len(e) for e in entities],
                                              [[[0.7, 0.2]] * len(e) for e in entities], n_l, 3)
    b = {"lm_ids": lm_ids, "lm_mask": lm_mask, "enc_ids": enc_ids, "enc_mask": enc_mask, "entity_ids": ent,
         "entity_mask": ent_mask, "emotion_ids": emo_ids, "emotion_probs": emo_probs,
         "target": torch.tensor([5, 6]), "weight": torch.tensor([2.0, 0.5])}
    if global_rows is not None:
        b["global_rows"], b["has_global"] = global_rows
    return b


def _global(n_entity, entities):
    n_l = max(map(len, entities))
    rows = sp.lil_matrix((len(entities) * n_l, n_entity), dtype="float32")
    for i, ents in enumerate(entities):
        for j, e in enumerate(ents):
            rows[i * n_l + j, (e + 1) % (n_entity - 1)] = 0.75
            rows[i * n_l + j, (e + 2) % (n_entity - 1)] = 0.25
    coo = rows.tocoo()
    t = torch.sparse_coo_tensor(torch.tensor(np.vstack([coo.row, coo.col])), torch.tensor(coo.data), coo.shape).coalesce()
    has = torch.tensor(rows.getnnz(axis=1) > 0).view(len(entities), n_l)
    return t, has


@pytest.fixture
def model(tiny_models, tiny_kg):
    meta, ei, et = tiny_kg
    torch.manual_seed(0)
    prompt = build_prompt_encoder(tiny_models["frozen"], meta, ei, et, num_bases=2, emotion_dim=4, n_prefix=3)
    return PromptedModel(tiny_models["frozen"], prompt)


def test_prefix_shapes_and_mask(model, tiny_kg):
    meta = tiny_kg[0]
    b = _batch(model._frozen, meta["pad_entity"],
               global_rows=_global(12, ((1, 2, 3), (4,))))
    table = model.prompt.entity_table()
    assert table.shape == (12, 32)
    prefix = model.prefix(b, table)
    # 3 soft tokens + 3 local + 3 global slots; 2 layers, 2 heads, head size 16.
    assert prefix.key.shape == (2, 2, 2, 9, 16) and prefix.value.shape == prefix.key.shape
    # Sample 2 has one entity: its two padded local slots and their global slots are masked.
    assert prefix.mask.tolist() == [[True] * 9, [True] * 4 + [False] * 2 + [True] + [False] * 2]


@pytest.fixture(autouse=True)
def _attach(model, tiny_models):
    model._frozen = tiny_models["frozen"]


def test_prefix_changes_hidden_states_and_grads_reach_only_the_prompt(model):
    b = _batch(model._frozen, 11, global_rows=_global(12, ((1, 2, 3), (4,))))
    out = model(b, "rec")
    out["loss"].backward()
    assert all(p.grad is None for p in model.lm.parameters())
    assert all(p.grad is None for p in model.encoder.parameters())
    grads = {n: p.grad for n, p in model.prompt.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert grads["node_embeds"].abs().sum() > 0 and grads["kg_encoder.weight"].abs().sum() > 0
    # The same tokens with a different prefix give different final hidden states.
    with torch.no_grad():
        table = model.prompt.entity_table()
        p1 = model.prefix(b, table)
        h1 = last_hidden(model.lm, p1, b["lm_ids"], b["lm_mask"])
        p2 = Prefix(p1.key * 3.0, p1.value * -2.0, p1.mask)
        h2 = last_hidden(model.lm, p2, b["lm_ids"], b["lm_mask"])
    assert not torch.allclose(h1, h2, atol=1e-4)


def test_a_masked_prefix_is_the_same_as_no_prefix(model):
    """With every prefix position masked, the LM computes exactly what it computes without a prefix: the
    attention mask really covers the prefix and positions start at 0 after it."""
    b = _batch(model._frozen, 11)
    with torch.no_grad():
        p = model.prefix(b | {"global_rows": _global(12, ((1, 2, 3), (4,)))[0],
                               "has_global": _global(12, ((1, 2, 3), (4,)))[1]}, model.prompt.entity_table())
        masked = Prefix(p.key, p.value, torch.zeros_like(p.mask))
        with_prefix = prefixed_forward(model.lm.base_model, masked, b["lm_ids"], b["lm_mask"]).last_hidden_state
        plain = model.lm.base_model(input_ids=b["lm_ids"], attention_mask=b["lm_mask"]).last_hidden_state
    real = b["lm_mask"].bool()
    assert torch.allclose(with_prefix[real], plain[real], atol=1e-5)


def test_entity_table_is_computed_once_per_step(model):
    calls = []
    model.prompt.kg.register_forward_hook(lambda *a: calls.append(1))
    b = _batch(model._frozen, 11, global_rows=_global(12, ((1, 2, 3), (4,))))
    model(b, "rec")["loss"].backward()
    assert len(calls) == 1


def test_padded_entities_do_not_change_the_prefix_when_masked(model, tiny_models, tiny_kg):
    """The same sample alone and next to a longer one (so padded to more entity slots) gets the same
    prefix over its real slots and the same score; the reference's unmasked fusion does not."""
    solo = _batch(model._frozen, 11, entities=((4,), (4,)), global_rows=_global(12, ((4,), (4,))))
    padded = _batch(model._frozen, 11, entities=((4,), (1, 2, 3)), global_rows=_global(12, ((4,), (1, 2, 3))))
    for k in ("lm_ids", "lm_mask", "enc_ids", "enc_mask"):
        solo[k] = padded[k]  # same texts in both batches
    with torch.no_grad():
        a = model(solo, "rec")["logits"][0]
        c = model(padded, "rec")["logits"][0]
    assert torch.allclose(a, c, atol=1e-4)
    meta, ei, et = tiny_kg
    torch.manual_seed(0)
    ref = build_prompt_encoder(tiny_models["frozen"], meta, ei, et, num_bases=2, emotion_dim=4, n_prefix=3,
                               mask_padding=False)
    unmasked = PromptedModel(tiny_models["frozen"], ref)
    with torch.no_grad():
        a = unmasked(solo, "rec")["logits"][0]
        c = unmasked(padded, "rec")["logits"][0]
    assert not torch.allclose(a, c, atol=1e-4)


def test_emotion_vectors_are_probability_weighted_label_vectors(model):
    ids, probs = emotion_slot_tensors([[["happy", "like", "curious", "negative"], []]], [[[0.6, 0.3, 0.2, 0.1], []]],
                                      2, 3)
    assert ids.tolist() == [[[2, 0, 1], [EMOTION_PAD] * 3]]  # top 3 kept, empty slot padded
    with torch.no_grad():
        v = model.prompt.emotion_vectors(ids, probs)
        table = model.prompt.emotion_table()
    assert torch.allclose(v[0, 0], 0.6 * table[2] + 0.3 * table[0] + 0.2 * table[1], atol=1e-6)
    assert torch.allclose(v[0, 1], torch.zeros(4))  # Eq. 3: no labels, zero vector


def test_global_entities_are_cooccurrence_weighted_entity_vectors(model):
    rows, has = _global(12, ((1, 2, 3), (4,)))
    with torch.no_grad():
        table = model.prompt.entity_table()
        glob = torch.sparse.mm(rows, table)
    assert torch.allclose(glob[0], 0.75 * table[2] + 0.25 * table[3], atol=1e-6)
    assert torch.allclose(glob[4], torch.zeros(32))  # a padded slot of sample 2
    assert has.tolist() == [[True, True, True], [True, False, False]]


def test_weighted_loss_is_the_weighted_mean_of_cross_entropies(model):
    b = _batch(model._frozen, 11, global_rows=_global(12, ((1, 2, 3), (4,))))
    with torch.no_grad():
        out = model(b, "rec")
        ce = torch.nn.functional.cross_entropy(out["logits"], b["target"], reduction="none")
    assert torch.allclose(out["loss"], (torch.tensor([2.0, 0.5]) * ce).mean(), atol=1e-6)


def test_batched_left_padded_generation_matches_one_at_a_time(model):
    frozen = model._frozen
    tok = frozen.lm_tokenizer
    b = _batch(frozen, 11, global_rows=_global(12, ((1, 2, 3), (4,))))
    rows = [r[m.bool()].tolist() for r, m in zip(b["lm_ids"], b["lm_mask"])]
    n = max(map(len, rows))
    left = torch.full((2, n), tok.pad_token_id)
    mask = torch.zeros((2, n), dtype=torch.long)
    for i, r in enumerate(rows):
        left[i, n - len(r):] = torch.tensor(r)
        mask[i, n - len(r):] = 1
    with torch.no_grad():
        p = model.prefix(b, model.prompt.entity_table())
        both = greedy_generate(model.lm, p, left, mask, max_new_tokens=8, eos_token_id=tok.eos_token_id)
        for i, r in enumerate(rows):
            one = Prefix(p.key[:, i:i + 1], p.value[:, i:i + 1], p.mask[i:i + 1])
            alone = greedy_generate(model.lm, one, torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long),
                                    max_new_tokens=8, eos_token_id=tok.eos_token_id)
            assert alone[0] == both[i]


def test_no_repeat_ngram_ban():
    from ecrflow.models.lm import ban_repeated_ngrams

    logits = torch.zeros(1, 10)
    ban_repeated_ngrams(logits, [[1, 2, 3, 1, 2]], 3)  # "1 2 3" seen: after "1 2", 3 is banned
    assert torch.isinf(logits[0, 3]) and torch.isfinite(logits[0, [0, 1, 2, 4]]).all()


def test_prefix_cache_holds_every_layer(model):
    p = Prefix(torch.randn(2, 1, 2, 5, 16), torch.randn(2, 1, 2, 5, 16), torch.ones(1, 5, dtype=torch.bool))
    cache = prefix_cache(p)
    assert cache.get_seq_length() == 5 and len(cache.layers) == 2


def test_basis_rgcn_equals_pyg_rgcnconv(tiny_kg):
    """The sparse basis-wise evaluation computes PyG's RGCNConv (mean per relation, bases, root, bias):
    same values and same parameter gradients, duplicate edges included."""
    from torch_geometric.nn import RGCNConv

    from ecrflow.models.rgcn import BasisRGCN

    meta, ei, et = tiny_kg
    ei = torch.cat([ei, ei[:, :3]], dim=1)  # parallel duplicate edges
    et = torch.cat([et, et[:3]])
    torch.manual_seed(0)
    conv = RGCNConv(6, 6, num_relations=3, num_bases=2)
    x = torch.randn(12, 6)
    ref = conv(x, ei, et)
    ref.square().sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in conv.named_parameters()}
    conv.zero_grad()
    out = BasisRGCN(conv, ei, et, 12)(conv, x)
    out.square().sum().backward()
    assert torch.allclose(out, ref, atol=1e-5)
    for n, p in conv.named_parameters():
        assert torch.allclose(p.grad, ref_grads[n], atol=1e-4), n


def test_prefix_is_shaped_for_grouped_query_attention(tiny_models, tiny_kg):
    """A Llama with fewer key/value heads than query heads (SmolLM2: 9 and 3) gets a prefix of its kv heads
    and head size, which it accepts, and which changes its output."""
    from dataclasses import replace

    from transformers import LlamaConfig, LlamaForCausalLM

    toy = tiny_models["frozen"]
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(toy.lm_tokenizer), hidden_size=48, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                                      head_dim=8)).eval().requires_grad_(False)  # frozen, as load_frozen
    frozen = replace(toy, lm=lm)
    assert frozen.lm_shape == {"hidden": 48, "n_layer": 2, "n_kv_head": 2, "head_dim": 8}
    meta, ei, et = tiny_kg
    model = PromptedModel(frozen, build_prompt_encoder(frozen, meta, ei, et, num_bases=2, emotion_dim=3,
                                                       n_prefix=3, global_entities=False))
    b = _batch(frozen, meta["pad_entity"])
    prefix = model.prefix(b, model.prompt.entity_table())
    assert prefix.key.shape == (2, 2, 2, 6, 8) and prefix.value.shape == prefix.key.shape  # 3 soft + 3 local
    with torch.no_grad():
        h = last_hidden(lm, prefix, b["lm_ids"], b["lm_mask"])
        h2 = last_hidden(lm, Prefix(prefix.key * -2.0, prefix.value * 3.0, prefix.mask), b["lm_ids"], b["lm_mask"])
    assert not torch.allclose(h, h2, atol=1e-4)
    out = model(b, "rec")
    out["loss"].backward()
    assert model.prompt.prompt_proj2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.parameters())


def _global_with_empty_row(n_entity):
    """Sample 1's second local entity has an empty co-occurrence row (the others as _global)."""
    rows, has = _global(n_entity, ((1, 2, 3), (4,)))
    dense = rows.to_dense()
    dense[1] = 0
    return dense.to_sparse_coo().coalesce(), torch.tensor([[True, False, True], [True, False, False]])


@pytest.mark.parametrize("mask_empty_global", [False, True])
def test_global_slots_with_an_empty_row_are_attended_as_the_reference(tiny_models, tiny_kg, mask_empty_global):
    meta, ei, et = tiny_kg
    torch.manual_seed(0)
    prompt = build_prompt_encoder(tiny_models["frozen"], meta, ei, et, num_bases=2, emotion_dim=4, n_prefix=3,
                                  mask_empty_global=mask_empty_global)
    m = PromptedModel(tiny_models["frozen"], prompt)
    b = _batch(tiny_models["frozen"], meta["pad_entity"], global_rows=_global_with_empty_row(12))
    with torch.no_grad():
        mask = m.prefix(b, m.prompt.entity_table()).mask
    # Slots: 3 soft tokens, 3 local, 3 global. Sample 1's second global slot has an empty row: the reference
    # fuses it (a zero vector with its entity's emotion) and the LM attends it; masked only by the switch.
    # Padding stays masked either way (sample 2's padded slots).
    assert mask[0].tolist() == [True] * 7 + [not mask_empty_global, True]
    assert mask[1].tolist() == [True] * 4 + [False] * 2 + [True] + [False] * 2


def _copy_model(tiny_models, tiny_kg, emotions=True):
    meta, ei, et = tiny_kg
    torch.manual_seed(0)
    prompt = build_prompt_encoder(tiny_models["frozen"], meta, ei, et, num_bases=2, emotion_dim=4, n_prefix=3,
                                  emotions=emotions, global_entities=True, copy=True)
    return PromptedModel(tiny_models["frozen"], prompt)


def test_copy_scores_mix_the_softmax_with_the_slot_weighted_cooccurrence_rows(tiny_models, tiny_kg):
    model = _copy_model(tiny_models, tiny_kg, emotions=False)
    with torch.no_grad():
        model.prompt.copy_gate.weight.zero_()
        model.prompt.copy_gate.bias.zero_()  # g = 0.5
    # Sample 0: two slots with rows [0, 1, 0, 0] and [0, 0, .5, .5] (uniform slot weights without emotions);
    # sample 1: a slot without a row, a padded slot.
    idx = torch.tensor([[0, 1, 1], [1, 2, 3]])
    rows = torch.sparse_coo_tensor(idx, torch.tensor([1.0, 0.5, 0.5]), (4, 4)).coalesce()
    has = torch.tensor([[True, True], [False, False]])
    mask = torch.tensor([[1, 1], [1, 0]])
    logits = torch.zeros(2, 4)
    out = model.prompt.copy_scores(torch.zeros(2, 32), logits, entity_mask=mask, global_rows=rows, has_global=has)
    p = out.exp()
    assert torch.allclose(p[0], torch.tensor([0.125, 0.375, 0.25, 0.25]), atol=1e-6)
    assert torch.allclose(p[1], torch.full((4,), 0.25), atol=1e-6)  # nothing to copy: plain softmax
    assert torch.allclose(p.sum(1), torch.ones(2), atol=1e-6)


def test_copy_is_trained_end_to_end_and_its_loss_is_the_log_probability(tiny_models, tiny_kg):
    model = _copy_model(tiny_models, tiny_kg)
    b = _batch(tiny_models["frozen"], 11,
               global_rows=_global(12, ((1, 2, 3), (4,))))
    out = model(b, "rec")
    logp = out["logits"]
    assert torch.allclose(logp.exp().sum(1), torch.ones(2), atol=1e-5)
    ce = -logp.gather(1, b["target"][:, None]).squeeze(1)
    assert torch.allclose(out["loss"], (b["weight"] * ce).mean(), atol=1e-5)
    out["loss"].backward()
    for name in ("copy_gate.weight", "copy_slot.0.weight"):
        grad = dict(model.prompt.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.lm.parameters())


def test_copy_needs_global_entities(tiny_models, tiny_kg):
    meta, ei, et = tiny_kg
    with pytest.raises(ValueError, match="needs global_entities"):
        build_prompt_encoder(tiny_models["frozen"], meta, ei, et, num_bases=2, emotion_dim=4, emotions=True,
                             global_entities=False, copy=True)


def test_popularity_prior_starts_stage_2_at_log_target_counts_and_lets_h_e_in_through_a_trained_scale(
        tiny_models, tiny_kg):
    from ecrflow.recommend.data import Sample
    from ecrflow.recommend.training import popularity_prior

    meta, ei, et = tiny_kg
    prompt = build_prompt_encoder(tiny_models["frozen"], meta, ei, et, num_bases=2, emotion_dim=4, n_prefix=3,
                                  global_entities=False, entity_bias=True)
    model = PromptedModel(tiny_models["frozen"], prompt)
    samples = [Sample("d", 0, [], [], [], [], [], target=t) for t in (5, 5, 5, 6)]
    popularity_prior(model, samples)
    bias = model.prompt.entity_bias.detach().clone()
    expected = torch.zeros(meta["n_entity"])
    expected[5], expected[6] = np.log(4.0), np.log(2.0)
    assert torch.allclose(bias, expected)
    b = _batch(tiny_models["frozen"], meta["pad_entity"])
    out = model(b, "rec")
    # At the start the scores are the prior alone: entity 5 first, then 6, the rest tied.
    assert torch.allclose(out["logits"], bias.expand_as(out["logits"]))
    out["loss"].backward()
    grads = {n: p.grad for n, p in model.prompt.named_parameters()}
    assert grads["entity_scale"].abs() > 0 and grads["entity_bias"].abs().sum() > 0
    # h . E gets gradient only through the scale: none while it is 0.
    assert grads["entity_proj2.weight"] is None or grads["entity_proj2.weight"].abs().sum() == 0
    with torch.no_grad():
        model.prompt.entity_scale.fill_(0.5)
        out = model(b, "rec")
        h = last_hidden(model.lm, model.prefix(b, model.prompt.entity_table()), b["lm_ids"], b["lm_mask"])
        plain = h.float() @ model.prompt.entity_table().float().t()
    assert torch.allclose(out["logits"], 0.5 * plain + bias, atol=1e-4)


def _kg_copy_model(tiny_models, tiny_kg, *, copy: bool, emotions: bool = False):
    meta, ei, et = tiny_kg
    torch.manual_seed(0)
    prompt = build_prompt_encoder(tiny_models["frozen"], meta, ei, et, num_bases=2, emotion_dim=4, n_prefix=3,
                                  emotions=emotions, global_entities=copy, copy=copy, kg_copy=True)
    return PromptedModel(tiny_models["frozen"], prompt)


def test_kg_copy_mixes_three_sources_and_drops_a_share_where_a_sample_has_no_row(tiny_models, tiny_kg):
    model = _kg_copy_model(tiny_models, tiny_kg, copy=True)
    with torch.no_grad():
        for gate in (model.prompt.copy_gate, model.prompt.kg_gate):
            gate.weight.zero_()
            gate.bias.zero_()  # equal shares among the sources a sample has
    # Two slots per sample. Co-occurrence rows: sample 0 slot 0 [0, 1, 0, 0]; sample 1 none.
    # KG rows: sample 0 slot 1 [0, 0, 0, 1]; sample 1 slot 0 [.5, .5, 0, 0].
    co = torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.tensor([1.0]), (4, 4)).coalesce()
    kg = torch.sparse_coo_tensor(torch.tensor([[1, 2, 2], [3, 0, 1]]), torch.tensor([1.0, 0.5, 0.5]), (4, 4))
    out = model.prompt.copy_scores(
        torch.zeros(2, 32), torch.zeros(2, 4), entity_mask=torch.tensor([[1, 1], [1, 1]]),
        global_rows=co, has_global=torch.tensor([[True, False], [False, False]]),
        kg_rows=kg.coalesce(), has_kg=torch.tensor([[False, True], [True, False]]))
    p = out.exp()
    # Sample 0: 1/3 softmax + 1/3 co-occurrence + 1/3 KG; sample 1 has no co-occurrence row: 1/2 + 1/2 KG.
    third = 1 / 3
    assert torch.allclose(p[0], torch.tensor([third / 4, third / 4 + third, third / 4, third / 4 + third]), atol=1e-6)
    assert torch.allclose(p[1], torch.tensor([0.375, 0.375, 0.125, 0.125]), atol=1e-6)
    with pytest.raises(ValueError, match="kg_copy is on but the batch carries no KG rows"):
        model.prompt.copy_scores(torch.zeros(2, 32), torch.zeros(2, 4), entity_mask=torch.ones(2, 2),
                                 global_rows=co, has_global=torch.ones(2, 2, dtype=torch.bool))


def test_kg_copy_without_cooccurrence_is_trained_end_to_end_through_the_collated_rows(tiny_models, tiny_kg):
    from types import SimpleNamespace

    from ecrflow.kg.neighbourhood import KGNeighbourhood
    from ecrflow.recommend.data import Collator

    meta, ei, _ = tiny_kg
    model = _kg_copy_model(tiny_models, tiny_kg, copy=False, emotions=True)
    b = _batch(tiny_models["frozen"], 11)
    collate = Collator(lm_pad=0, enc_pad=1, pad_entity=11,
                       kg=KGNeighbourhood(ei.numpy(), meta["n_entity"], item_ids=list(range(5, 11))))
    samples = [SimpleNamespace(entity=e, dialog_id="d") for e in ([1, 2, 3], [4])]  # as _batch's entities
    b["kg_rows"], b["has_kg"] = collate._kg_rows(samples, b["entity_ids"].shape[1])
    dense, has = b["kg_rows"].to_dense(), b["has_kg"].reshape(-1)
    assert has.any() and not has[4:].any()  # sample 1's padded slots get no row
    assert dense[:, :5].sum() == 0  # only the candidate items get mass
    assert torch.allclose(dense.sum(1)[has], torch.ones(int(has.sum())))
    out = model(b, "rec")
    assert torch.allclose(out["logits"].exp().sum(1), torch.ones(2), atol=1e-5)
    out["loss"].backward()
    for name in ("kg_gate.weight", "kg_slot.0.weight"):
        grad = dict(model.prompt.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.lm.parameters())


def test_prefix_injection_uses_no_deprecated_transformers_argument(model):
    """The prefix reaches the model through ``cache=`` (transformers >= 5.24): no FutureWarning from the
    forward pass or the cached decoding, so the release that removes ``past_key_values`` (5.40) breaks
    nothing here. Run on the newest transformers 5.x that installs (CI installs it fresh)."""
    import warnings

    import transformers

    frozen = model._frozen
    tok = frozen.lm_tokenizer
    b = _batch(frozen, 11, global_rows=_global(12, ((1, 2, 3), (4,))))
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        p = model.prefix(b, model.prompt.entity_table())
        prefixed_forward(model.lm, p, b["lm_ids"], b["lm_mask"])
        greedy_generate(model.lm, p, b["lm_ids"], b["lm_mask"], max_new_tokens=3, eos_token_id=tok.eos_token_id)
    deprecated = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert not deprecated, deprecated
    assert tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (5, 24)
