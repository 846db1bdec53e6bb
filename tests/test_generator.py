"""The emotion-aligned generator: one prompt format for training and inference, the target augmentation,
loss masking, batched generation, the LoRA adapter round trip and checkpointing of tied weights."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from ecrflow.generate.examples import KnowledgeOptions, MovieNames, inference_example, training_example
from ecrflow.generate.generator import (IGNORE, META, CausalLMObjective, Collator, attach_lora, encode, generate,
                                        load_tokenizer, load_trained)
from ecrflow.generate.prompts import (Knowledge, augment_review, frequent_templates, prompt_lines, render,
                                      sample_down)

RES = "<http://dbpedia.org/resource/"
ENTITY2ID = {f"{RES}Black_Panther_(film)>": 0, f"{RES}Chadwick_Boseman>": 1, f"{RES}Ryan_Coogler>": 2,
             f"{RES}Wakanda>": 3, f"{RES}Vibranium>": 4, f"{RES}Marvel_Studios>": 5}
ITEMS = pa.table({"entity_id": [0], "name": ["Black Panther (2018)"]})


@pytest.fixture
def names():
    return MovieNames(ITEMS, ENTITY2ID)


def test_names_are_one_function_of_the_id(names):
    assert names.movie(0) == "Black Panther (2018)"  # the ReDial name, at training and at inference
    assert names.entity(0) == "Black Panther"
    assert names.movie(5) == "Marvel Studios"  # not in the dialogues: its DBpedia name


def test_training_and_inference_prompts_are_the_same_format(names):
    opts = KnowledgeOptions(n_entities=4, n_triples=2, augment_prob=0.0, seed=1)
    review = {"review_id": "0-0", "movie": 0, "entities": [3, 4], "relation_entities": [1, 2],
              "relations": ["starring", "director"], "content": "A great film."}
    k_train, target = training_example(review, names, ["Have you seen <movie>?"], opts)
    k_test = inference_example("d1", 4, 0, "Have you seen <movie>?", [3, 4], [(1, "starring"), (2, "director")],
                               names, opts)
    assert k_train == k_test
    lines = prompt_lines(k_train)
    assert lines == ["Movie Name: Black Panther (2018)", "Related Entities: Wakanda, Vibranium",
                     "Related Knowledge from KG: Black Panther (2018)'s starring is Chadwick Boseman, "
                     "Black Panther (2018)'s director is Ryan Coogler",
                     "First Sentence: Have you seen Black Panther (2018)?"]
    assert target == "A great film."


def test_prompt_ablations_and_empty_knowledge():
    k = Knowledge("M (2000)", ("A",), (("starring", "B"),), "Try M (2000).")
    assert prompt_lines(k, "none") == ["Movie Name: M (2000)", "First Sentence: Try M (2000)."]
    assert prompt_lines(k, "no_triples")[1] == "Related Entities: A, B"
    assert len(prompt_lines(k, "no_triples")) == 3
    empty = Knowledge("M (2000)", (), (), "x")
    assert prompt_lines(empty)[1:3] == ["Related Entities: None", "Related Knowledge from KG: None"]
    with pytest.raises(ValueError, match="knowledge mode"):
        prompt_lines(k, "half")


def test_sampling_keeps_order_and_count():
    rng = np.random.default_rng(0)
    got = sample_down(list(range(10)), 4, rng)
    assert len(got) == 4 and got == sorted(got) and len(set(got)) == 4
    assert sample_down([1, 2], 4, rng) == [1, 2]


def test_inference_sampling_is_seeded_per_turn(names):
    opts = KnowledgeOptions(n_entities=1, n_triples=1, augment_prob=0.0, seed=3)
    args = (0, "u", [3, 4], [(1, "starring"), (2, "director")], names, opts)
    assert inference_example("d", 2, *args) == inference_example("d", 2, *args)
    draws = {inference_example("d", t, *args) for t in range(20)}
    assert len(draws) > 1  # different turns sample different knowledge


def test_augmentation_inserts_before_first_mention_or_at_the_end():
    rng = np.random.default_rng(0)
    text = "I loved it. Boseman is great. The end."
    out = augment_review(text, "Black Panther (2018)", [("starring", "Boseman"), ("director", "Coogler")], rng,
                         prob=1.0)
    pieces = out.split(". ")
    assert pieces[0] == "I loved it"
    assert pieces[1].endswith("'s starring is Boseman")  # right before the sentence that mentions Boseman
    assert pieces[2] == "Boseman is great"
    assert out.endswith("'s director is Coogler.")  # nobody mentions Coogler: at the end, not before "The end."
    # same relation, same place: one sentence; at the very start the subject is the title
    merged = augment_review("Great cast.", "Black Panther (2018)", [("starring", "Ann Lee"), ("starring", "Bo Kim")],
                            np.random.default_rng(0), prob=1.0)
    assert merged.startswith("Great cast. ") and merged.endswith("'s starring is Ann Lee and Bo Kim.")
    start = augment_review("A is great.", "Black Panther (2018)", [("starring", "A")], np.random.default_rng(0), 1.0)
    assert start.startswith("Black Panther's starring is A. A is great.")
    assert augment_review(text, "M", [("starring", "Boseman")], rng, prob=0.0) == text


def test_templates_are_frequent_movie_responses():
    got = frequent_templates(["Have you seen <movie>?"] * 3 + ["Try <movie>"] * 2 + ["Hello"] * 9 + [None], 2)
    assert got == [{"text": "Have you seen <movie>?", "count": 3}, {"text": "Try <movie>", "count": 2}]


def test_plain_and_chat_rendering(tiny_models, tmp_path):
    tok = load_tokenizer(tiny_models["paths"]["plm"])
    lines = ["Movie Name: X", "First Sentence: Y"]
    assert render(tok, lines, "plain") == "Movie Name: X<|endoftext|>First Sentence: Y<|endoftext|>"
    text = render(tok, lines, "chat")  # no chat template on this tokenizer: the instruction layout
    assert text.startswith("### Instruction:\n") and text.endswith("### Response:\n")
    llama_tok = load_tokenizer(tiny_llama(tiny_models, tmp_path))
    chat = render(llama_tok, lines, "chat")
    assert chat.startswith("<s>[INST] <<SYS>>\n") and chat.endswith("Movie Name: X\nFirst Sentence: Y [/INST]")


def test_encode_keeps_the_end_of_the_prompt(tiny_models):
    tok = load_tokenizer(tiny_models["paths"]["plm"])
    prompt = render(tok, ["Movie Name: a long name " * 10, "First Sentence: hi"], "plain")
    p, t = encode(tok, prompt, "a fine movie " * 20, context_max_length=12, resp_max_length=8)
    assert len(p) == 12 and p[-1] == tok.eos_token_id  # generation starts right after the prompt's end
    assert len(t) == 8 and t[-1] == tok.eos_token_id


def test_loss_covers_only_the_review_tokens(tiny_models):
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(tiny_models["paths"]["plm"])
    examples = [([5, 6, 7], [8, 9, tok.eos_token_id]), ([5, 6], [10, tok.eos_token_id])]
    batch = Collator(tok.pad_token_id)(examples)
    assert batch["labels"].tolist() == [[IGNORE] * 3 + [8, 9, tok.eos_token_id],
                                        [IGNORE] * 2 + [10, tok.eos_token_id] + [IGNORE] * 2]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1] * 4 + [0] * 2]
    with_prompt = Collator(tok.pad_token_id, prompt_loss=True)(examples)
    assert with_prompt["labels"][0].tolist() == [5, 6, 7, 8, 9, tok.eos_token_id]

    lm = AutoModelForCausalLM.from_pretrained(tiny_models["paths"]["plm"]).eval()
    loss = CausalLMObjective(lm)(batch)["loss"]
    logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # by hand: next-token cross-entropy at the target positions only
    terms = [torch.nn.functional.cross_entropy(logits[i, j - 1], batch["labels"][i, j], reduction="sum")
             for i in range(2) for j in range(1, 6) if batch["labels"][i, j] != IGNORE]
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)


def test_batched_generation_equals_one_at_a_time(tiny_models):
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(tiny_models["paths"]["plm"])
    lm = AutoModelForCausalLM.from_pretrained(tiny_models["paths"]["plm"]).eval()
    texts = ["Have you seen <movie> ?", "Hi, I am looking for a good comedy tonight.", "Sounds great",
             "Then try <movie> , an action comedy from the same director."]
    prompts = [tok(t)["input_ids"] for t in texts]
    batched = generate(lm, tok, prompts, batch_size=4, max_new_tokens=12, no_repeat_ngram_size=3)
    single = generate(lm, tok, prompts, batch_size=1, max_new_tokens=12, no_repeat_ngram_size=3)
    assert batched == single
    assert any(batched)
    for out in batched:  # no 3-gram twice
        grams = [tuple(out[i:i + 3]) for i in range(len(out) - 2)]
        assert len(grams) == len(set(grams))


def tiny_llama(tiny_models, tmp_path):
    from ecrflow.models.toy import build_toy_llama

    out = tmp_path / "llama"
    if not out.exists():
        build_toy_llama(["hello there"] * 4, tiny_models["paths"]["plm"], out, hidden=32, n_layer=2, n_head=4,
                        lm_steps=0, seed=0)
    return out


def test_lora_adapter_round_trip(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    base = tiny_llama(tiny_models, tmp_path)
    tok = load_tokenizer(base)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    model = attach_lora(AutoModelForCausalLM.from_pretrained(base), lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # B starts at zero; make the adapter change the outputs
    model.eval()
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / META).write_text(json.dumps({"method": "lora", "base_model": str(base)}))
    assert not (folder / "model.safetensors").exists()  # the adapter only, not the base weights

    ids = torch.tensor([tok("hello there, how are you")["input_ids"]])
    reloaded, _, meta = load_trained(folder)
    merged, _, _ = load_trained(folder, merge=True)
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    with torch.no_grad():
        want = model(input_ids=ids).logits
        assert torch.equal(reloaded(input_ids=ids).logits, want)
        assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-5)
        assert not torch.allclose(plain(input_ids=ids).logits, want, atol=1e-3)  # the adapter matters
    prompts = [ids[0].tolist()]
    assert generate(reloaded, tok, prompts, batch_size=1, max_new_tokens=8) == \
        generate(model, tok, prompts, batch_size=1, max_new_tokens=8)


def test_tied_weights_checkpoint_and_resume(tiny_models, tmp_path):
    """Full fine-tuning checkpoints only the trained parameters (GPT-2 ties its embedding and output
    weights, which safetensors refuses to save twice) and resumes from them."""
    from transformers import AutoModelForCausalLM

    from ecrflow.train import TrainConfig, Trainer

    tok = load_tokenizer(tiny_models["paths"]["plm"])
    data = [([5, 6, 7], [8 + i % 5, 9, tok.eos_token_id]) for i in range(12)]

    def run(epochs):
        lm = AutoModelForCausalLM.from_pretrained(tiny_models["paths"]["plm"])
        cfg = TrainConfig(epochs=epochs, batch_size=4, grad_accum=1, lr=1e-3, warmup_steps=0, seed=0,
                          precision="fp32", checkpoint_every=1)
        trainer = Trainer(CausalLMObjective(lm), lm, cfg, tmp_path / "work", "fp", task="gen", params_only=True)
        return trainer.fit(data, Collator(tok.pad_token_id)), lm

    first, _ = run(1)
    assert first.resumed_from is None and first.state.step == 3
    second, lm = run(2)
    assert second.resumed_from == 3 and second.state.step == 6
    assert "transformer.wte.weight" in second.best_state and "lm_head.weight" not in second.best_state
    assert torch.equal(lm.lm_head.weight, lm.transformer.wte.weight)  # still tied after loading the state
