"""The LLM judge: strict parsing of real-looking answers, pseudonyms mapped back to the right systems,
retries with a fresh shuffle, kappa on hand cases, Table 2 rows, bootstrap intervals."""

import math
import re

import numpy as np
import pytest

from ecrflow.judge.scoring import (METRIC_KEYS, PSEUDONYMS, Prompt, build_request, judge_contexts, parse_scores,
                                   shuffle)
from ecrflow.judge.tables import bootstrap_ci, cohen_kappa, ranking_kappa, ranks, table2_rows
from ecrflow.llm.base import Backend, Request, Response
from ecrflow.llm.cache import RequestCache
from ecrflow.llm.constraint import ParseError

ORDER = ["ecr_dialogpt", "unicrs", "rl_dialogpt"]


def test_parse_maps_lines_to_the_systems_in_the_shown_order():
    scores = parse_scores("A: 1 2 3 4 5\nB: 0 0 0 0 0\nC: 9 9 9 9 8", ORDER)
    assert scores["ecr_dialogpt"] == dict(zip(METRIC_KEYS, [1, 2, 3, 4, 5]))
    assert scores["unicrs"] == dict(zip(METRIC_KEYS, [0] * 5))
    assert scores["rl_dialogpt"]["life"] == 8


@pytest.mark.parametrize("answer", [
    "A: 1 2 3 4 5\r\nB: 0 0 0 0 0  \n\nC: 9 9 9 9 9\n",  # CRLF, trailing spaces, blank line: layout only
])
def test_layout_noise_is_accepted(answer):
    assert parse_scores(answer, ORDER)["rl_dialogpt"]["emo_int"] == 9


@pytest.mark.parametrize("answer", [
    "A: 7 8 6 7 8\nB: 5 6 5 5 6",                                   # a reply missing
    "A: 7, 8, 6, 7, 8\nB: 5 6 5 5 6\nC: 1 1 1 1 1",                 # commas
    "Response A: 7 8 6 7 8\nResponse B: 5 6 5 5 6\nResponse C: 1 1 1 1 1",
    "A: 10 8 6 7 8\nB: 5 6 5 5 6\nC: 1 1 1 1 1",                    # out of range
    "A: 7 8 6 7\nB: 5 6 5 5 6\nC: 1 1 1 1 1",                       # four scores
    "Sure! Here are the scores:\nA: 7 8 6 7 8\nB: 5 6 5 5 6\nC: 1 1 1 1 1",
    "B: 5 6 5 5 6\nA: 7 8 6 7 8\nC: 1 1 1 1 1",                     # lines out of order
    "A: 7.5 8 6 7 8\nB: 5 6 5 5 6\nC: 1 1 1 1 1",
    "",
    None,
])
def test_malformed_answers_raise(answer):
    with pytest.raises(ParseError):
        parse_scores(answer, ORDER)


def test_shuffle_is_a_seeded_permutation_that_varies_by_context_and_attempt():
    systems = [f"s{i}" for i in range(6)]
    a = shuffle(systems, seed=1, judge="j", dialog_id="d1", turn=3, attempt=1)
    assert sorted(a) == systems
    assert a == shuffle(systems, seed=1, judge="j", dialog_id="d1", turn=3, attempt=1)
    others = {tuple(shuffle(systems, seed=1, judge="j", dialog_id="d1", turn=3, attempt=k)) for k in range(2, 8)}
    others |= {tuple(shuffle(systems, seed=s, judge="j", dialog_id="d1", turn=3, attempt=1)) for s in range(2, 8)}
    assert len(others) > 3
    # over many contexts every system is shown first sometimes (no fixed position)
    firsts = {shuffle(systems, seed=1, judge="j", dialog_id=f"d{i}", turn=0, attempt=1)[0] for i in range(200)}
    assert firsts == set(systems)


def test_request_shows_each_reply_under_its_pseudonym_and_constrains_the_answer():
    ctx = {"history": "User: hi\nRecommender: hello", "item_name": "Alien (1979)"}
    req = build_request(ctx, ORDER, {"ecr_dialogpt": "e reply", "unicrs": "u reply", "rl_dialogpt": ""},
                        prompt=Prompt(), constrained=True)
    user = req.messages[1][1]
    assert "A: e reply" in user and "B: u reply" in user and "C: (empty reply)" in user
    assert "Alien (1979)" in user and "Recommender: hello" in user
    assert req.constraint.matches("A: 1 2 3 4 5\nB: 0 0 0 0 0\nC: 9 9 9 9 9")
    assert not req.constraint.matches("A: 1 2 3 4 5\nB: 0 0 0 0 0")
    assert build_request(ctx, ORDER, {s: "x" for s in ORDER}, prompt=Prompt(), constrained=False).constraint is None


def test_prompt_file_needs_its_placeholders(tmp_path):
    good = tmp_path / "p.txt"
    good.write_text("Judge. {definitions} e.g. {example}\n---\n{history} {item} {replies} {names}")
    assert Prompt.from_file(good).user.startswith("{history}")
    bad = tmp_path / "bad.txt"
    bad.write_text("Judge. {definitions}\n---\n{history} {replies}")
    with pytest.raises(ValueError, match="example"):
        Prompt.from_file(bad)


def _reply_score(text: str) -> int:
    return len(text) % 10


class ReadingJudge(Backend):
    """Scores each shown reply by its length: a correct un-shuffle gives every system the score of its own
    reply, whatever position it was shown in. ``garbage_first`` answers nonsense on attempt 1 prompts."""

    model_id = "fake-judge"

    def __init__(self, garbage: set | None = None):
        self.garbage = garbage or set()
        self.calls = 0

    def generate(self, requests):
        out = []
        for r in requests:
            self.calls += 1
            user = r.messages[1][1]
            shown = re.findall(r"^([A-Z]): (.*)$", user.split("Candidate replies:\n", 1)[1], flags=re.M)
            hist = user.split("\n")[1]
            if hist in self.garbage:
                self.garbage.discard(hist)  # nonsense once, then a proper answer to the next (reshuffled) prompt
                out.append(Response("I think they are all good!"))
                continue
            lines = [f"{name}: " + " ".join([str(_reply_score(text))] * 5) for name, text in shown]
            out.append(Response("\n".join(lines)))
        return out


def _contexts(n):
    return [{"dialog_id": f"d{i}", "turn": i % 3, "history": f"User: message {i}", "item_name": "Alien"}
            for i in range(n)]


def _replies(contexts):
    systems = ["unicrs", "ecr_dialogpt", "ecr_llama", "llm_x"]
    return {s: {(c["dialog_id"], c["turn"]): f"{s} says{'!' * (i + j)}" for i, c in enumerate(contexts)}
            for j, s in enumerate(systems)}


def test_judge_maps_shuffled_pseudonyms_back_to_systems(tmp_path):
    contexts = _contexts(12)
    replies = _replies(contexts)
    with RequestCache(tmp_path / "cache") as cache:
        rows, summary = judge_contexts(contexts, replies, ReadingJudge(), cache, judge="j", seed=3, max_attempts=2,
                                       batch_size=4, prompt=Prompt(), constrained=True)
    assert summary["judged"] == 12 and not summary["unscored_contexts"]
    assert len(rows) == 12 * 4 * len(METRIC_KEYS)
    for r in rows:
        assert r["score"] == _reply_score(replies[r["system"]][(r["dialog_id"], r["turn"])])
    # the shuffle really moved systems around
    assert len({(r["system"], r["pseudonym"]) for r in rows}) > 8


def test_unparseable_answers_are_retried_with_a_new_shuffle_and_counted(tmp_path):
    contexts = _contexts(6)
    backend = ReadingJudge(garbage={"User: message 1", "User: message 4"})
    with RequestCache(tmp_path / "cache") as cache:
        rows, summary = judge_contexts(contexts, _replies(contexts), backend, cache, judge="j", seed=3,
                                       max_attempts=3, batch_size=8, prompt=Prompt(), constrained=False)
    assert [a["unparseable"] for a in summary["attempts"]] == [2, 0]
    assert summary["judged"] == 6
    assert {r["attempt"] for r in rows if r["dialog_id"] in ("d1", "d4")} == {2}
    assert summary["unparseable_examples"] == ["I think they are all good!"] * 2


class Nonsense(Backend):
    model_id = "nonsense"

    def generate(self, requests):
        return [Response("Scores: great, good, fine") for _ in requests]


def test_contexts_that_never_parse_are_left_out_never_scored_zero(tmp_path):
    contexts = _contexts(4)
    with RequestCache(tmp_path / "cache") as cache:
        rows, summary = judge_contexts(contexts, _replies(contexts), Nonsense(), cache, judge="j", seed=0,
                                       max_attempts=2, batch_size=8, prompt=Prompt(), constrained=False)
    assert rows == []
    assert len(summary["unscored_contexts"]) == 4
    assert [(a["requests"], a["unparseable"]) for a in summary["attempts"]] == [(4, 4), (4, 4)]


class FailsOne(Backend):
    """Answers like ReadingJudge, except a request error for the context "User: message 1"."""

    model_id = "fake-judge"

    def generate(self, requests):
        good = ReadingJudge().generate(requests)
        return [Response(None, error="HTTP 500") if "User: message 1\n" in r.messages[1][1] else g
                for r, g in zip(requests, good)]


def test_a_failed_request_is_never_scored_and_a_rerun_sends_only_it(tmp_path):
    from ecrflow.llm.stage import StageIncomplete

    contexts = _contexts(4)
    kw = dict(judge="j", seed=0, max_attempts=3, batch_size=8, prompt=Prompt(), constrained=False)
    with RequestCache(tmp_path / "cache") as cache, pytest.raises(StageIncomplete, match="failed 1, unparseable 0"):
        judge_contexts(contexts, _replies(contexts), FailsOne(), cache, **kw)
    backend = ReadingJudge()
    with RequestCache(tmp_path / "cache") as cache:
        rows, summary = judge_contexts(contexts, _replies(contexts), backend, cache, **kw)
    assert backend.calls == 1 and summary["judged"] == 4
    assert {r["attempt"] for r in rows} == {1}  # the failure did not use up an attempt


def test_cohen_kappa_hand_case():
    # p_o = 4/6; label frequencies a (2,2,2), b (2,3,1): p_e = 12/36; kappa = (2/3 - 1/3) / (2/3)
    assert cohen_kappa([1, 2, 1, 2, 3, 3], [1, 2, 2, 2, 3, 1]) == pytest.approx(0.5)
    assert cohen_kappa([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)
    assert cohen_kappa([1, 1], [1, 1]) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa([1], [1, 2])


def test_ranks_and_ranking_kappa_hand_case():
    assert ranks({"x": 2, "y": 2, "z": 7}) == {"z": 1, "x": 2, "y": 2}
    s = lambda **kw: {k: {"emo_int": v} for k, v in kw.items()}  # noqa: E731
    a = {("d", 0): s(x=5, y=3, z=1), ("d", 1): s(x=2, y=2, z=7), ("e", 0): s(x=1, y=1, z=1)}
    b = {("d", 0): s(x=9, y=1, z=4), ("d", 1): s(x=1, y=3, z=8)}
    # ranks in system order: a [1,2,3, 2,2,1], b [1,3,2, 3,2,1]: p_o 3/6, p_e 12/36 -> 0.25; ("e", 0) only in a
    kappa, n = ranking_kappa(a, b, "emo_int")
    assert n == 2 and kappa == pytest.approx(0.25)


def test_table2_rows_means_paper_values_and_kappa():
    def rows(judge_scores):
        return [{"dialog_id": d, "turn": 0, "system": s, "metric": m, "score": v}
                for (d, s), v in judge_scores.items() for m in METRIC_KEYS]
    j1 = rows({("a", "unicrs"): 1, ("a", "ecr_llama"): 7, ("b", "unicrs"): 3, ("b", "ecr_llama"): 9})
    j2 = rows({("a", "unicrs"): 2, ("a", "ecr_llama"): 5, ("b", "unicrs"): 6, ("b", "ecr_llama"): 4})
    out = table2_rows({"j1": j1, "j2": j2}, {"unicrs": "UniCRS", "ecr_llama": "ECR[Llama 2-Chat]"})
    by = {(r["judge"], r["system"]): r for r in out}
    assert by[("j1", "unicrs")]["emo_int"] == 2.0 and by[("j1", "ecr_llama")]["life"] == 8.0
    assert by[("j1", "unicrs")]["paper_emo_int"] == 0.400
    assert by[("j1", "ecr_llama")]["paper_life"] == 8.063
    assert by[("j1", "unicrs")]["n"] == 2
    k = by[("j1 vs j2", "cohen_kappa_of_rankings")]
    # context a: both rank llama first; context b: j1 llama first, j2 unicrs first -> labels [2,1,2,1] vs [2,1,1,2]
    assert k["emo_int"] == pytest.approx(cohen_kappa([2, 1, 2, 1], [2, 1, 1, 2]), abs=1e-3)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(5, 2, 30)
    large = rng.normal(5, 2, 3000)
    lo, hi = bootstrap_ci(small, seed=1)
    lo2, hi2 = bootstrap_ci(large, seed=1)
    assert lo < small.mean() < hi and lo2 < large.mean() < hi2
    assert (hi2 - lo2) < (hi - lo) / 5
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_pseudonyms_are_distinct_letters():
    assert len(set(PSEUDONYMS)) == len(PSEUDONYMS) and "I" not in PSEUDONYMS and "O" not in PSEUDONYMS


def test_lexicon_judge_answers_the_judge_prompt_from_the_text():
    from ecrflow.llm import make_backend

    judge = make_backend({"kind": "lexicon", "batch_size": 4})
    ctx = {"history": "User: any comedy?", "item_name": "The Velvet Tower (2004)"}
    replies = {"flat": "Have you seen it?",
               "rich": "You will love The Velvet Tower, an amazing and funny story because the cast is brilliant!"}
    order = ["flat", "rich"]
    req = build_request(ctx, order, replies, prompt=Prompt(), constrained=True)
    answer = judge.generate([req])[0]
    scores = parse_scores(answer.text, order)  # the same strict parser as for an LLM
    assert all(scores["rich"][m] > scores["flat"][m] for m in ("emo_int", "emo_pers", "log_pers", "info"))
    assert judge.generate([req])[0].text == answer.text  # deterministic
    other = judge.generate([Request((("user", "What is 2+2?"),), max_tokens=5)])[0]
    assert not other.ok and "not a judge prompt" in other.error
    with pytest.raises(ValueError, match="unknown option"):
        make_backend({"kind": "lexicon", "temperature": 1})
