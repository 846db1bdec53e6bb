"""The critic: per-head metrics computed from the right columns (the earlier project's bug reported identical
per-judge R^2), rows and targets built per judge, heads that learn distinct targets on a learnable task."""

import numpy as np
import pytest

from ecrflow.critic import (CriticSettings, critic_rows, fit_critic, head_metrics, load_critic, predict, r2_score,
                            reward_weights, save_critic, split_by_dialog, spearman)
from ecrflow.train import TrainSettings

METRICS = ["emo_int", "emo_pers", "log_pers", "info", "life"]


def test_r2_mae_spearman_hand_case():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 2.0, 4.0, 3.0])
    # ss_res = 2, ss_tot = 5 -> R^2 = 0.6; Spearman of ranks (1,2,3,4) vs (1,2,4,3) = 1 - 6*2/(4*15) = 0.8
    assert r2_score(y, p) == pytest.approx(0.6)
    assert spearman(y, p) == pytest.approx(0.8)
    m = head_metrics(np.stack([p, y], 1), np.stack([y, y], 1), ["a", "b"])
    assert m["a"] == {"n": 4, "target_std": pytest.approx(np.sqrt(1.25)), "r2": pytest.approx(0.6),
                      "mae": pytest.approx(0.5), "spearman": pytest.approx(0.8)}
    assert m["b"]["r2"] == pytest.approx(1.0) and m["b"]["mae"] == 0
    # a head whose judge gave every reply the same score: nothing to explain, R^2 and Spearman undefined
    flat = head_metrics(np.stack([p, p], 1), np.full((4, 2), 5.0), ["a", "b"])
    assert flat["a"]["target_std"] == 0 and np.isnan(flat["a"]["r2"]) and np.isnan(flat["a"]["spearman"])


def test_each_head_is_scored_against_its_own_target_column():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 9, size=(200, 5))
    noise = np.array([0.1, 0.5, 1.0, 2.0, 3.0])
    pred = target + rng.normal(size=target.shape) * noise
    m = head_metrics(pred, target, METRICS)
    r2 = [m[k]["r2"] for k in METRICS]
    assert len(set(np.round(r2, 6))) == 5, "different targets and noise must give different R^2"
    assert r2 == sorted(r2, reverse=True)  # more noise, lower R^2: head j is compared with target j
    for j, k in enumerate(METRICS):
        assert m[k]["r2"] == pytest.approx(r2_score(target[:, j], pred[:, j]))
    # the same predictions against another judge's (different) targets give other numbers
    other = head_metrics(pred, np.clip(target + rng.normal(size=target.shape) * 2, 0, 9), METRICS)
    assert all(other[k]["r2"] != m[k]["r2"] for k in METRICS)


def test_missing_scores_are_left_out_per_head():
    target = np.array([[1.0, np.nan], [2.0, 5.0], [3.0, 7.0]])
    m = head_metrics(np.array([[1.0, 0.0], [2.0, 5.0], [3.0, 7.0]]), target, ["a", "b"])
    assert m["a"]["n"] == 3 and m["b"]["n"] == 2 and m["b"]["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        head_metrics(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])


def test_critic_rows_keep_each_judge_and_average_them():
    contexts = [{"dialog_id": "d1", "turn": 0, "history": "User: hi"}, {"dialog_id": "d2", "turn": 1, "history": "User: yo"}]
    replies = {"unicrs": {("d1", 0): "u1", ("d2", 1): "u2"}, "ecr": {("d1", 0): "e1", ("d2", 1): "e2"}}

    def scores(base):
        return [{"dialog_id": d, "turn": t, "system": s, "metric": m, "score": base + i}
                for (d, t) in (("d1", 0), ("d2", 1)) for s in ("unicrs", "ecr") for i, m in enumerate(METRICS)]
    j2 = [r for r in scores(3) if not (r["dialog_id"] == "d2" and r["system"] == "ecr")]  # j2 skipped one
    rows = critic_rows(contexts, replies, {"j1": scores(1), "j2": j2}, METRICS)
    by = {(r["dialog_id"], r["system"]): r for r in rows}
    assert len(rows) == 4 and by[("d1", "ecr")]["reply"] == "e1" and by[("d1", "ecr")]["context"] == "User: hi"
    np.testing.assert_allclose(by[("d1", "ecr")]["judges"]["j1"], [1, 2, 3, 4, 5])
    np.testing.assert_allclose(by[("d1", "ecr")]["judges"]["j2"], [3, 4, 5, 6, 7])
    np.testing.assert_allclose(by[("d1", "ecr")]["target"], [2, 3, 4, 5, 6])
    assert np.isnan(by[("d2", "ecr")]["judges"]["j2"]).all()
    np.testing.assert_allclose(by[("d2", "ecr")]["target"], [1, 2, 3, 4, 5])


def test_split_by_dialog_keeps_dialogues_together():
    rows = [{"dialog_id": f"d{i // 3}", "x": i} for i in range(60)]
    tr, va, te = split_by_dialog(rows, 0.2, 0.2, seed=0)
    ids = [{r["dialog_id"] for r in part} for part in (tr, va, te)]
    assert len(tr) + len(va) + len(te) == 60
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(ids[1]) == 4 and len(ids[2]) == 4


def test_reward_weights_are_normalised_and_checked():
    np.testing.assert_allclose(reward_weights({"emo_int": 1, "life": 3}, METRICS), [0.25, 0, 0, 0, 0.75])
    with pytest.raises(ValueError, match="unknown"):
        reward_weights({"empathy": 1}, METRICS)
    with pytest.raises(ValueError):
        reward_weights({"emo_int": 0}, METRICS)


WORDS = ["wow", "love", "because", "actor", "laugh"]  # one per head
FILLER = ["the", "movie", "is", "a", "film", "and", "it", "was", "so", "you"]


def _synthetic(n, rng):
    rows = []
    for i in range(n):
        counts = rng.integers(0, 4, size=5)
        words = [w for w, c in zip(WORDS, counts) for _ in range(c)]
        words += list(rng.choice(FILLER, size=20 - len(words)))
        rng.shuffle(words)
        rows.append({"dialog_id": f"d{i}", "context": "User: any good movie?", "reply": " ".join(words),
                     "target": 3.0 * counts})
    return rows


def test_critic_heads_learn_distinct_targets(tmp_path):
    """Each head's target is three times the count of its own word in a 20-word reply: learnable, and
    independent across heads, so a critic that mixed heads up could not reach R^2 > 0.8 on all five."""
    from ecrflow.models.toy import build_toy_models

    rng = np.random.default_rng(0)
    train, valid, test = _synthetic(600, rng), _synthetic(100, rng), _synthetic(150, rng)
    texts = [r["context"] + " " + r["reply"] for r in train]
    build_toy_models(texts, tmp_path / "lm", tmp_path / "enc", vocab_size=300, hidden=32, n_layer=1, n_head=2,
                     lm_steps=1, seed=0)
    section = CriticSettings(epochs=25, batch_size=32, grad_accum=1, eval_batch_size=128, lr=3e-3, warmup_steps=10,
                             max_length=48, dropout=0.0, seed=0, valid_fraction=0.1, test_fraction=0.1)
    critic, enc, result = fit_critic(train, valid, model_name=str(tmp_path / "enc"), metrics=METRICS, section=section,
                                     train_cfg=TrainSettings(precision="fp32", checkpoint_every=0),
                                     work_dir=tmp_path / "work", fp="x")
    pred = predict(critic, enc, [(r["context"], r["reply"]) for r in test])
    m = head_metrics(pred, np.stack([r["target"] for r in test]), METRICS)
    assert all(m[k]["r2"] > 0.8 for k in METRICS), m
    assert len({round(m[k]["r2"], 6) for k in METRICS}) == 5
    # saved and loaded back, the critic predicts the same numbers
    save_critic(tmp_path / "critic", critic, enc.tok, {"metrics": METRICS, "max_length": 48})
    again, enc2, meta = load_critic(tmp_path / "critic")
    np.testing.assert_allclose(predict(again, enc2, [(r["context"], r["reply"]) for r in test[:10]]), pred[:10],
                               rtol=1e-5, atol=1e-5)
