"""RL pieces that need no critic training: the KL estimate, the held-out split, the reward's input."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def tiny_lm(tiny_models):
    from ecrflow.generate.generator import load_base, load_tokenizer

    path = tiny_models["paths"]["plm"]
    return load_base(path).eval(), load_tokenizer(path)


def test_kl_of_a_policy_with_itself_is_zero_and_grows_when_it_moves(tiny_lm):
    from ecrflow.rl import kl_per_token

    model, tok = tiny_lm
    prompts = [tok("Have you seen <movie> ?")["input_ids"], tok("I loved it, thanks!")["input_ids"]]
    assert kl_per_token(model, model, tok, prompts, max_new_tokens=8, seed=0, device="cpu") == pytest.approx(0, abs=1e-6)
    moved = type(model)(model.config)
    moved.load_state_dict(model.state_dict())
    with torch.no_grad():
        moved.lm_head.weight.add_(torch.randn_like(moved.lm_head.weight) * 0.5)
    assert kl_per_token(moved.eval(), model, tok, prompts, max_new_tokens=8, seed=0, device="cpu") > 0.01


def test_completion_logprobs_match_a_full_forward(tiny_lm):
    from ecrflow.rl import completion_logprobs

    model, tok = tiny_lm
    p, c = tok("Have you seen")["input_ids"], tok(" <movie> ?")["input_ids"]
    lp = completion_logprobs(model, tok, [p], [c], "cpu")[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + c])).logits[0]
    expect = [torch.log_softmax(logits[len(p) - 1 + i], -1)[t].item() for i, t in enumerate(c)]
    np.testing.assert_allclose(lp, expect, rtol=1e-5, atol=1e-6)


def test_heldout_split_is_by_dialogue():
    from ecrflow.rl import split_heldout

    rows = [{"dialog_id": f"d{i // 4}", "turn": i % 4} for i in range(80)]
    train, held = split_heldout(rows, 0.25, seed=0)
    assert len(held) == 20 and not ({r["dialog_id"] for r in train} & {r["dialog_id"] for r in held})
