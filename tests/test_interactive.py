"""Talking to the systems: the entity linker, the simulated seeker's mechanics (turn limit, success, leak
filter, metrics, cache), the OpenAI-compatible server over HTTP; the toy workspace's chat, server and
simulated-user outputs (e2e)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from ecrflow.interactive.linking import EntityLinker, gold_links, link_scores
from ecrflow.interactive.simulate import (SimDialogue, SimSettings, converse, dialogue_record, filter_leaks,
                                          scripted_dialogues, summarise)
from ecrflow.interactive.system import Reply, check_history
from ecrflow.llm.base import Backend, Request, Response
from ecrflow.llm.cache import RequestCache

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "redial_real_sample"


def uri(name: str) -> str:
    return f"<http://dbpedia.org/resource/{name}>"


ENTITY2ID = {uri(n): i for i, n in enumerate([
    "The_Matrix_(1999)", "Up_(2009)", "horror", "scary", "romance", "comedy", "Keanu_Reeves",
    "Arnold_Schwarzenegger", "Scream_(1996)", "The_Scream_(1993)", "Hope_(2007)", "Batman_(1989)",
    "Batman_(1966)", "Fast_&_Furious_(2009)"])}
MOVIES = {0: "The Matrix (1999)", 1: "Up (2009)", 8: "Scream (1996)", 10: "Hope (2007)", 11: "Batman (1989)",
          12: "Batman (1966)", 13: "Fast & Furious  (2009)"}


@pytest.fixture(scope="module")
def linker():
    return EntityLinker(ENTITY2ID, MOVIES, {11: 30, 12: 2})


def ids(links):
    return [(x.entity_id, x.kind) for x in links]


def test_linker_finds_titles_people_and_genres_in_free_text(linker):
    text = "I loved The Matrix with keanu reeves, something scary please"
    links = linker.link(text)
    assert ids(links) == [(0, "movie"), (6, "entity"), (3, "entity")]
    assert [text[x.start:x.end] for x in links] == ["The Matrix", "keanu reeves", "scary"]
    assert links[0].name == "The Matrix (1999)" and links[0].score == 100
    # one content word in lower case reads as words ("the help", "the conversation"), unless a year follows
    assert linker.link("loved the matrix") == [] and ids(linker.link("the matrix (1999)")) == [(0, "movie")]


def test_linker_reads_words_as_words(linker):
    # a one-word title at the start of a sentence, or in lower case, is a word; a year makes it a title
    assert linker.link("Hope you like it. I will go up the hill.") == []
    assert ids(linker.link("I watched Up (2009) and Hope (2007).")) == [(1, "movie"), (10, "movie")]
    assert ids(linker.link("My kids loved Hope.")) == [(10, "movie")]
    assert linker.link("My kids loved Up.") == []  # a stop word needs its year (It, Up, Her)


def test_linker_forms_misspellings_years_and_ties(linker):
    links = linker.link("romantic comedies with Arnold Schwazzenegger")
    assert ids(links) == [(4, "entity"), (5, "entity"), (7, "entity")]
    assert 90 <= links[2].score < 100  # fuzzy
    assert ids(linker.link("I love the Scream (1996) movies")) == [(8, "movie")]  # the dated title, not "The Scream"
    assert ids(linker.link("I think Batman was great")) == [(11, "movie")]  # the one the dialogues mention most
    assert ids(linker.link("the old Batman (1966) show")) == [(12, "movie")]
    assert ids(linker.link("so Fast & Furious was fun")) == [(13, "movie")]


def test_link_scores_hand_computed(linker):
    msgs = [
        {"text": "I loved The Matrix, something scary", "movies": [uri("The_Matrix_(1999)")],
         "entities": [uri("scary"), uri("horror")]},  # tp 2, gold 3
        {"text": "I think Batman was great", "movies": [uri("Batman_(1966)")], "entities": []},  # fp 1, fn 1
        {"text": "nothing here", "movies": [], "entities": [uri("Gone")]},  # a gold URI outside entity2id
    ]
    rows = {r["kind"]: r for r in link_scores(linker, msgs, ENTITY2ID)}
    assert (rows["all"]["true_positives"], rows["all"]["predicted"], rows["all"]["gold"]) == (2, 3, 4)
    assert rows["all"]["precision"] == pytest.approx(2 / 3) and rows["all"]["recall"] == pytest.approx(2 / 4)
    assert (rows["movie"]["true_positives"], rows["movie"]["predicted"], rows["movie"]["gold"]) == (1, 2, 2)
    assert (rows["entity"]["precision"], rows["entity"]["recall"]) == (1.0, 0.5)
    assert rows["all"]["gold_not_in_entity2id"] == 1


def test_linker_on_real_redial_messages():
    """The release links each message; the linker recovers them from the text alone (valid split: the
    rules were written on train)."""
    from ecrflow.io import read_json

    e2i = read_json(SAMPLE / "entity2id.json")
    movies = {}
    for split in ("train", "valid", "test"):
        for line in (SAMPLE / f"{split}_data_dbpedia_raw.jsonl").read_text().splitlines():
            for m in json.loads(line)["messages"]:
                movies.update({e2i[u]: n for u, n in zip(m["movie"], m["movie_name"]) if u in e2i and n})
    linker = EntityLinker(e2i, movies)
    for years, (p_min, r_min) in ((True, (0.8, 0.93)), (False, (0.75, 0.85))):
        rows = {r["kind"]: r for r in link_scores(linker, gold_links(SAMPLE / "valid_data_dbpedia_raw.jsonl", years),
                                                  e2i)}
        assert rows["all"]["precision"] > p_min and rows["all"]["recall"] > r_min, rows["all"]
        assert rows["all"]["messages"] == 592


# -- the simulated seeker ---------------------------------------------------------------------------------------


def test_leak_filter_replaces_and_counts_titles():
    assert filter_leaks("Something like The Matrix please", ["The Matrix (1999)"], 90) == (
        "Something like that movie please", 1)
    text, n = filter_leaks("maybe the matirx again, the matrix!", ["The Matrix (1999)"], 90)
    assert n == 2 and "matrix" not in text.lower() and "matirx" not in text.lower()
    assert filter_leaks("what's up with that", ["Up (2009)"], 90) == ("what's up with that", 0)
    assert filter_leaks("I loved Up so much", ["Up (2009)"], 90) == ("I loved that movie so much", 1)
    assert filter_leaks("a dark thriller", ["The Matrix (1999)"], 90) == ("a dark thriller", 0)


def test_metrics_on_hand_checked_dialogues():
    recs = [{"success_turn": 1, "recall": 0.5, "system_turns": 1, "leaks": 0},
            {"success_turn": 3, "recall": 1.0, "system_turns": 3, "leaks": 2},
            {"success_turn": None, "recall": 0.0, "system_turns": 3, "leaks": 0}]
    s = summarise(recs, k=10, turns=3)
    assert s["recall@10"] == pytest.approx(0.5) and s["success"] == pytest.approx(2 / 3)
    assert (s["success@1"], s["success@2"], s["success@3"]) == pytest.approx((1 / 3, 1 / 3, 2 / 3))
    assert s["turns_to_success"] == 2.0 and s["reward_per_turn"] == pytest.approx((1 + 1 / 3) / 3)
    assert (s["leaks"], s["dialogues_with_leak"], s["system_turns"]) == (2, 1, pytest.approx(7 / 3))
    assert math.isnan(summarise(recs[2:], k=10, turns=3)["turns_to_success"])


class Seeker(Backend):
    """Says the target's title every time (so the filter has work) and counts what it was sent."""

    model_id = "scripted-seeker"

    def __init__(self):
        self.sent = 0

    @staticmethod
    def answer(request):
        return Response(f"Hmm, not that. I want something like The Matrix, turn {len(request.messages)}.")

    def generate(self, requests):
        self.sent += len(requests)
        return [self.answer(r) for r in requests]


def _dialogues():
    return [SimDialogue("a", [0], ["The Matrix (1999)"], "Hi! I liked The Matrix a lot", []),
            SimDialogue("b", [8], ["Scream (1996)"], "hello, a horror movie?", ["horror"])]


def _system(dialogues):
    """Dialogue a: the target ranked 3rd at its second turn; dialogue b: never."""
    out = []
    for d in dialogues:
        turn = sum(t["role"] == "assistant" for t in d.turns) + 1
        ranking = [5, 6, 0, 7] if d.dialog_id == "a" and turn == 2 else [5, 6, 7, 9]
        out.append((f"try item {ranking[0]}", ranking))
    return out


def test_converse_turn_limit_success_leaks_and_rerun_from_cache(tmp_path):
    settings = SimSettings(dialogues=2, turns=3, k=3, seed=0, max_tokens=16)
    seeker = Seeker()
    dias = _dialogues()
    with RequestCache(tmp_path) as cache:
        counts = converse(dias, _system, seeker, cache, mode="target_given", settings=settings, stage="t")
    a, b = dias
    assert a.success_turn == 2 and [t["role"] for t in a.turns] == ["user", "assistant", "user", "assistant"]
    assert b.success_turn is None and len(b.rankings) == 3  # the limit: three system turns, two seeker replies
    assert [t["role"] for t in b.turns] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert a.turns[0]["text"] == "Hi! I liked that movie a lot" and a.leaks == 2  # opening + one reply
    assert b.leaks == 0  # its target is Scream: the seeker's "The Matrix" is no leak there
    assert counts == {"requests": 3, "sent": 3} and seeker.sent == 3
    rec = dialogue_record(a, "sys", "target_given", 3)
    assert rec["recall"] == 1.0 and rec["turns"][-1]["hit"] == [0]
    again, seeker2 = _dialogues(), Seeker()
    with RequestCache(tmp_path) as cache:
        counts = converse(again, _system, seeker2, cache, mode="target_given", settings=settings, stage="t")
    assert counts == {"requests": 3, "sent": 0} and seeker2.sent == 0
    assert [d.turns for d in again] == [d.turns for d in dias]


class GoesDown(Seeker):
    """Answers ``up`` requests, then stops as the HTTP client does when its breaker trips."""

    def __init__(self, up):
        super().__init__()
        self.up = up

    def iter_generate(self, requests):
        from ecrflow.llm.base import EndpointDown

        for j, r in enumerate(requests):
            if self.sent >= self.up:
                raise EndpointDown("the endpoint x gave no answer to 5 consecutive attempts")
            self.sent += 1
            yield j, self.answer(r)


def test_a_seeker_endpoint_that_goes_down_fails_the_run_and_a_rerun_sends_the_rest(tmp_path):
    from ecrflow.llm.stage import StageIncomplete

    settings = SimSettings(dialogues=2, turns=3, k=3, seed=0, max_tokens=16, batch_size=1)
    with RequestCache(tmp_path) as cache, pytest.raises(StageIncomplete, match="gave no answer"):
        converse(_dialogues(), _system, GoesDown(2), cache, mode="target_given", settings=settings, stage="t")
    seeker = Seeker()
    with RequestCache(tmp_path) as cache:
        counts = converse(_dialogues(), _system, seeker, cache, mode="target_given", settings=settings, stage="t")
    assert counts == {"requests": 3, "sent": 1} and seeker.sent == 1  # two were answered before it went down


def test_seeker_prompts_hide_titles_in_target_free_mode():
    from ecrflow.interactive.simulate import seeker_request

    d = _dialogues()[1]
    d.turns = [{"role": "user", "text": d.opening}, {"role": "assistant", "text": "try this"}]
    s = SimSettings(dialogues=1, turns=2, k=3, seed=0)
    free = seeker_request(d, "target_free", s, 1).messages
    given = seeker_request(d, "target_given", s, 1).messages
    assert "Scream" not in free[0][1] and "horror" in free[0][1]
    assert "Scream (1996)" in given[0][1]
    # the seeker's own messages are the assistant's: the recommender speaks to it
    assert [r for r, _ in free] == ["system", "assistant", "user"]
    assert seeker_request(d, "target_free", s, 2).key("m") != seeker_request(d, "target_free", s, 1).key("m")


def test_scripted_dialogues_from_the_real_test_split():
    from ecrflow.io import read_json

    e2i = read_json(SAMPLE / "entity2id.json")
    linker = EntityLinker(e2i, {})
    items = set(e2i.values())
    picked = scripted_dialogues(SAMPLE / "test_data_dbpedia_raw.jsonl", linker, e2i, items, 5, seed=3)
    assert len(picked) == 5 and picked == scripted_dialogues(SAMPLE / "test_data_dbpedia_raw.jsonl", linker, e2i,
                                                             items, 5, seed=3)
    dialogs = {str(json.loads(line)["conversationId"]): json.loads(line)
               for line in (SAMPLE / "test_data_dbpedia_raw.jsonl").read_text().splitlines()}
    for d in picked:
        raw = dialogs[d.dialog_id]
        rec_movies = {e2i[u] for m in raw["messages"] if m["senderWorkerId"] != raw["initiatorWorkerId"]
                      for u in m["movie"] if u in e2i}
        assert d.targets and set(d.targets) <= rec_movies
        assert "@" not in d.opening


# -- the server ---------------------------------------------------------------------------------------------------


class EchoChat:
    """A stand-in system: replies with the number of turns and the last user message."""

    systems = ["unicrs", "ecr"]

    def __init__(self):
        self.lock = threading.Lock()

    def respond(self, history, system="ecr", top_k=10):
        with self.lock:
            time.sleep(0.01)
            return Reply(text=f"{system}:{len(history)}:{history[-1][1]}", items=[{"id": 1, "name": "X", "score": 1.0}],
                         entities=[[] for _ in history], emotions=[[] for _ in history], system=system)


@pytest.fixture
def echo_server():
    from ecrflow.interactive.server import ChatServer

    server = ChatServer(EchoChat(), port=0)
    server.start()
    yield server
    server.shutdown()
    server.server_close()


def test_server_answers_openai_chat_completions(echo_server):
    body = {"model": "unicrs", "messages": [{"role": "system", "content": "ignored"},
                                            {"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "hello"},
                                            {"role": "user", "content": "a comedy?"}]}
    r = requests.post(f"{echo_server.url}/chat/completions", json=body, timeout=10)
    assert r.status_code == 200
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == "unicrs"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "unicrs:3:a comedy?"}
    assert out["ecrflow"]["items"] == [{"id": 1, "name": "X", "score": 1.0}]
    assert requests.get(f"{echo_server.url}/models", timeout=10).json()["data"][1]["id"] == "ecr"
    # the project's own OpenAI-compatible client talks to it too; without a model name: the default system
    from ecrflow.llm.http import OpenAIBackend

    client = OpenAIBackend(echo_server.url, "ecr", timeout=10, max_retries=1, guided="none")
    [resp] = client.generate([Request(messages=(("user", "hello there"),), max_tokens=20)])
    assert resp.ok and resp.text == "ecr:1:hello there"


@pytest.mark.parametrize("body, status, message", [
    ("not json", 400, "not JSON"),
    ({"messages": []}, 400, "non-empty list"),
    ({"messages": [{"role": "user"}]}, 400, "messages[0] must be an object with 'role' and 'content'"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role is 'robot'"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, 400,
     "the last message must be the user's"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}, 400, "unknown model 'gpt-4'"),
    ({"stream": True, "messages": [{"role": "user", "content": "x"}]}, 400, "streaming is not supported"),
    ({"top_k": 0, "messages": [{"role": "user", "content": "x"}]}, 400, "top_k"),
])
def test_server_rejects_malformed_requests_with_a_message(echo_server, body, status, message):
    kw = {"data": body} if isinstance(body, str) else {"json": body}
    r = requests.post(f"{echo_server.url}/chat/completions", timeout=10, **kw)
    assert r.status_code == status and message in r.json()["error"]["message"]


def test_server_unknown_route(echo_server):
    r = requests.post(f"{echo_server.url}/completions", json={}, timeout=10)
    assert r.status_code == 404 and "/v1/chat/completions" in r.json()["error"]["message"]


def test_server_keeps_concurrent_conversations_apart(echo_server):
    results = {}

    def talk(i):
        msgs = [{"role": "user", "content": f"c{i} t{t}"} if t % 2 == 0 else {"role": "assistant", "content": "ok"}
                for t in range(2 * (i % 3) + 1)]
        r = requests.post(f"{echo_server.url}/chat/completions", json={"messages": msgs}, timeout=30)
        results[i] = r.json()["choices"][0]["message"]["content"]

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"ecr:{2 * (i % 3) + 1}:c{i} t{2 * (i % 3)}" for i in range(12)}


def test_check_history_drops_system_messages():
    assert check_history([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]) == [("user", "u")]


# -- the toy workspace: the chat, the server and the simulated-user outputs -----------------------------------------

TOY_RUN = "results/toy"


@pytest.fixture(scope="module")
def toy_chat(toy_workspace):
    import os

    from ecrflow.interactive.system import ChatSystem

    here = os.getcwd()
    os.chdir(toy_workspace)
    try:
        yield ChatSystem(f"{TOY_RUN}/interactive/system.json")
    finally:
        os.chdir(here)


@pytest.mark.e2e
def test_chat_system_is_the_trained_pipeline(toy_workspace, toy_chat):
    """Handed a processed test turn, the chat system writes the conversation module's u_r and ranks as
    recommend_predict did: the same models, settings and inputs."""
    import pyarrow.parquet as pq

    from ecrflow.interactive.system import DialogueState

    rows = [r for r in pq.read_table(toy_workspace / TOY_RUN / "data/processed/test_rec.parquet").to_pylist()
            if r["context"] and r["rec"]][:6]
    u_r = {(r["dialog_id"], r["turn"]): r["resp"] for r in
           pq.read_table(toy_workspace / TOY_RUN / "conversation/test_responses.parquet").to_pylist()}
    pred = {}
    for p in pq.read_table(toy_workspace / TOY_RUN / "recommend/ecr/test_predictions.parquet").to_pylist():
        pred.setdefault((p["dialog_id"], p["turn"]), p)
    for r in rows:
        st = DialogueState(context=r["context"], roles=r["context_roles"], entity=r["entity"],
                           labels=r["entity_emotions"], probs=r["entity_emotion_probs"])
        key = (r["dialog_id"], r["turn"])
        assert toy_chat._u_r(st) == u_r[key]
        ranked = toy_chat._rank(st, u_r[key], "ecr", 5)
        assert [x["id"] for x in ranked] == pred[key]["top_items"][:5]
        assert [x["score"] for x in ranked] == pytest.approx(pred[key]["top_scores"][:5], abs=1e-3)


TOY_TURNS = ["Hi! I love action movies. I really liked The Last Planet (2008)", "Something darker maybe?"]


@pytest.mark.e2e
def test_ecrflow_chat_json_on_the_toy_workspace(toy_workspace, toy_chat):
    proc = subprocess.run([sys.executable, "-m", "ecrflow.cli", "chat", "--workspace", str(toy_workspace),
                           "--run", "toy", "--json", "--top-k", "5"], input="\n".join(TOY_TURNS) + "\n/quit\n",
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [t["user"] for t in turns] == TOY_TURNS and all(t["system"] == "ecr" for t in turns)
    first = turns[0]
    assert [e["name"] for e in first["entities"][0] if e["kind"] == "movie"] == ["The Last Planet (2008)"]
    assert len(first["entities"]) == 1 and len(turns[1]["entities"]) == 3  # user, system, user
    for t in turns:
        scores = [x["score"] for x in t["items"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert t["reply"].startswith(t["u_r"].replace("<movie>", t["items"][0]["name"]))
    # the same conversation in-process gives the same turns: the CLI adds nothing of its own
    history = [("user", TOY_TURNS[0])]
    assert toy_chat.respond(history, "ecr", 5).text == first["reply"]
    history += [("assistant", first["reply"]), ("user", TOY_TURNS[1])]
    assert toy_chat.respond(history, "ecr", 5).to_json()["items"] == turns[1]["items"]


@pytest.mark.e2e
def test_server_over_the_toy_systems(toy_chat):
    from ecrflow.interactive.server import ChatServer

    server = ChatServer(toy_chat, port=0)
    server.start()
    try:
        msgs = [{"role": "user", "content": TOY_TURNS[0]}]
        for system in ("unicrs", "ecr_rl"):
            out = requests.post(f"{server.url}/chat/completions", json={"model": system, "messages": msgs,
                                                                        "top_k": 3}, timeout=120).json()
            direct = toy_chat.respond([("user", TOY_TURNS[0])], system, 3)
            assert out["choices"][0]["message"]["content"] == direct.text
            assert out["ecrflow"]["items"] == direct.items and len(direct.items) == 3
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
def test_ecrflow_serve_command(toy_workspace):
    import re

    proc = subprocess.Popen([sys.executable, "-m", "ecrflow.cli", "serve", "--workspace", str(toy_workspace),
                             "--run", "toy", "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"(http://\S+/v1)/chat/completions", line).group(1)
        out = requests.post(f"{url}/chat/completions", timeout=120,
                            json={"messages": [{"role": "user", "content": TOY_TURNS[0]}]}).json()
        assert out["model"] == "ecr" and out["choices"][0]["message"]["content"]
        assert requests.post(f"{url}/chat/completions", json={"messages": "hi"}, timeout=30).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.e2e
def test_simulated_user_dialogues_and_table(toy_workspace):
    """Every dialogue obeys the turn limit, ends at its first success, hides the targets' titles from what
    the seeker says, and the table is what the dialogues give."""
    import csv

    from ecrflow.generate.prompts import title_without_year

    cfg = {"turns": 3, "k": 10, "dialogues": 4}
    table = list(csv.DictReader((toy_workspace / TOY_RUN / "tables/interactive.csv").open()))
    assert sorted((r["mode"], r["system"]) for r in table) == sorted(
        (m, s) for m in ("target_given", "target_free") for s in ("unicrs", "ecr", "ecr_rl", "llm"))
    for row in table:
        recs = _records(toy_workspace / TOY_RUN / "interactive" / row["mode"] / f"{row['system']}.jsonl")
        assert len(recs) == cfg["dialogues"]
        for r in recs:
            system_turns = [t for t in r["turns"] if t["role"] == "assistant"]
            assert 1 <= len(system_turns) <= cfg["turns"] and r["system_turns"] == len(system_turns)
            hits = [i + 1 for i, t in enumerate(system_turns) if set(t["items"]) & set(r["targets"])]
            assert r["success_turn"] == (hits[0] if hits else None)
            assert r["turns"][-1]["role"] == "assistant"  # the seeker speaks only when the system gets a turn
            assert r["recall"] == len(set(system_turns[-1]["items"][:cfg["k"]]) & set(r["targets"])) / len(r["targets"])
            assert r["leaks"] == sum(t.get("leaks", 0) for t in r["turns"] if t["role"] == "user")
            for t in r["turns"]:
                if t["role"] == "user":
                    for name in r["target_names"]:
                        assert title_without_year(name).lower() not in t["text"].lower()
        expected = summarise(recs, k=cfg["k"], turns=cfg["turns"])
        for key in ("recall@10", "success", "success@1", "success@3", "reward_per_turn", "leaks"):
            assert float(row[key]) == pytest.approx(expected[key])
    assert (toy_workspace / TOY_RUN / "report/interactive_dialogues.html").read_text().count("<table>") == 4


@pytest.mark.e2e
def test_simulated_user_rerun_sends_nothing_new(copy_workspace):
    from conftest import snakemake

    ws = copy_workspace()
    base = ws / TOY_RUN / "interactive" / "target_given"
    before = (base / "ecr.jsonl").read_text()
    for name in ("ecr.json", "ecr.jsonl"):
        (base / name).unlink()
    snakemake(ws, f"{TOY_RUN}/interactive/target_given/ecr.json", "--configfile", str(REPO / "config" / "toy.yaml"))
    summary = json.loads((base / "ecr.json").read_text())
    assert summary["seeker_requests_sent"] == 0 and summary["seeker_requests"] > 0
    assert (base / "ecr.jsonl").read_text() == before
