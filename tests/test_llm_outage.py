"""The LLM stages (emotion annotation, the judge, the LLM baselines) against a loopback OpenAI-compatible
server that fails the way real endpoints do: a failed request is never scored or labelled, the stage fails
with the counts, and a plain rerun sends exactly the missing requests (issue 15)."""

from __future__ import annotations

import email.utils
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from ecrflow.emotion.steps import emotion_annotate
from ecrflow.judge.steps import judge, llm_baseline
from ecrflow.llm import stage as stage_mod
from ecrflow.llm.base import Request
from ecrflow.llm.http import OpenAIBackend
from ecrflow.llm.stage import StageIncomplete

SECRET = "sk-loopback-0123456789-secret"


def judge_answer(user: str) -> str:
    """Scores every shown reply by its length, so a correct un-shuffle is checkable."""
    shown = re.findall(r"^([A-Z]): (.*)$", user.split("Candidate replies:\n", 1)[1].split("\n\n")[0], flags=re.M)
    return "\n".join(f"{name}: " + " ".join([str(len(text) % 10)] * 5) for name, text in shown)


def healthy(user: str) -> str:
    if "Candidate replies:" in user:
        return judge_answer(user)
    if "Only recommend the movie" in user:
        return "You will love " + re.search(r"Only recommend the movie (.*?);", user).group(1) + "!"
    return "happy, curious"


class Loopback:
    """/v1/chat/completions on 127.0.0.1 (port 0). ``fail(user, n)`` picks the action for the n-th request
    (from 0) with that user message: None answers healthily; ("status", code[, headers]), ("hang",),
    ("gibberish",), ("echo_key",). Every request's user message is recorded in ``sent``."""

    def __init__(self, fail=None):
        self.fail = fail or (lambda user, n: None)
        self.sent: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                with srv.lock:
                    n = srv.sent.count(user)
                    srv.sent.append(user)
                action = srv.fail(user, n) or ("ok",)
                try:
                    if action[0] == "hang":
                        srv.release.wait(10)
                        return
                    if action[0] == "status":
                        self._send(action[1], json.dumps({"error": "unavailable"}),
                                   action[2] if len(action) > 2 else {})
                        return
                    content = {"ok": lambda: healthy(user), "gibberish": lambda: "lorem ipsum dolor sit amet",
                               "echo_key": lambda: healthy(user) + " " + self.headers["Authorization"]}[action[0]]()
                    self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                                                "echo": self.headers["Authorization"]}))
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, code, payload, headers=None):
                data = payload.encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def servers():
    made = []

    def make(fail=None):
        made.append(Loopback(fail))
        return made[-1]

    yield make
    for s in made:
        s.close()


def http_llm(server, **kw) -> dict:
    return {"kind": "http", "http": {"base_url": server.url, "model": "loop-model", "api_key_env": None,
                                     "guided": "none", "timeout": 2, "max_retries": 2, "backoff": 0.001,
                                     "concurrency": 2, **kw}}


def context_no(user: str) -> int:
    """Which sampled context (or utterance) a prompt is about: they are numbered in their text."""
    return int(re.search(r"message (\d+)", user).group(1))


def fail_contexts(which, action=("status", 503)):
    return lambda user, n: action if context_no(user) in which else None


# -- the judge and the baselines -----------------------------------------------------------------------------


def write_sample(tmp_path, n=9):
    rows = [{"dialog_id": f"d{i}", "turn": 1, "history": f"User: message {i}", "item": i,
             "item_name": f"Film {i}", "u_r": f"Try Film {i}{'!' * i}", "reference": ""} for i in range(n)]
    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join(json.dumps(r) + "\n" for r in rows))
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"dialog_id": r["dialog_id"], "turn": 1, "response": f"Film {i} is great"
                                         + "?" * (2 * i)}) + "\n" for i, r in enumerate(rows)))
    return sample, other


def run_judge(tmp_path, server, sample, other, out="out", cache="cache", max_attempts=3):
    outd = tmp_path / out
    outd.mkdir(exist_ok=True)
    judge(sample, {"unicrs": None, "ecr_x": str(other)}, scores_out=outd / "scores.parquet",
          summary_out=outd / "summary.json", cache_dir=tmp_path / cache, name="loop",
          options={"llm": http_llm(server), "seed": 1, "max_attempts": max_attempts, "constrained": False,
                   "batch_size": 4, "prompt_file": None})
    return outd


def test_judge_outage_scores_nothing_and_a_rerun_sends_exactly_the_missing_requests(tmp_path, servers):
    sample, other = write_sample(tmp_path)
    down = servers(fail_contexts({1, 4, 7}))
    with pytest.raises(StageIncomplete) as err:
        run_judge(tmp_path, down, sample, other)
    msg = str(err.value)
    assert "sent 9, answered 6, failed 3, unparseable 0" in msg and "only the 3 missing ones are sent" in msg
    assert str(tmp_path / "cache") in msg and "rerun the same snakemake command" in msg
    assert not (tmp_path / "out" / "scores.parquet").exists() and not (tmp_path / "out" / "summary.json").exists()
    sent = [context_no(u) for u in down.sent]
    assert sorted(sent) == sorted(list(range(9)) + [1, 4, 7] * 2)  # each failing one: 1 + max_retries

    up = servers()
    outd = run_judge(tmp_path, up, sample, other)
    assert sorted(context_no(u) for u in up.sent) == [1, 4, 7]  # exactly the missing requests
    rows = pq.read_table(outd / "scores.parquet").to_pylist()
    summary = json.loads((outd / "summary.json").read_text())
    assert summary["judged"] == 9 and summary["unscored_contexts"] == []
    replies = {"unicrs": {f"d{i}": f"Try Film {i}{'!' * i}" for i in range(9)},
               "ecr_x": {f"d{i}": f"Film {i} is great" + "?" * (2 * i) for i in range(9)}}
    for r in rows:  # every score is the judge's answer for that system's own reply: none is a failure's 0
        assert r["score"] == len(replies[r["system"]][r["dialog_id"]]) % 10 and r["attempt"] == 1

    clean = servers()
    clean_out = run_judge(tmp_path, clean, sample, other, out="clean", cache="clean_cache")
    assert pq.read_table(clean_out / "scores.parquet").to_pylist() == rows  # as if there had been no outage


def run_baseline(tmp_path, server, sample, out="base", cache="bcache", **kw):
    outd = tmp_path / out
    outd.mkdir(exist_ok=True)
    llm_baseline(sample, out=outd / "responses.jsonl", summary_out=outd / "summary.json", cache_dir=tmp_path / cache,
                 llm=http_llm(server, **kw), batch_size=4, max_tokens=32, max_attempts=3, name="loop")
    return outd


def test_baseline_outage_never_becomes_a_judged_reply(tmp_path, servers, caplog, monkeypatch):
    monkeypatch.setattr(stage_mod, "PROGRESS_EVERY_S", 0.0)  # a progress line on every answer
    sample, _ = write_sample(tmp_path)
    down = servers(fail_contexts({0, 3, 6}, ("status", 500)))
    with caplog.at_level(logging.INFO, logger="ecrflow.llm.stage"), pytest.raises(StageIncomplete) as err:
        run_baseline(tmp_path, down, sample)
    assert "failed 3" in str(err.value) and "3 of 9 items have no answer" in str(err.value)
    assert not (tmp_path / "base" / "responses.jsonl").exists() and not (tmp_path / "base" / "summary.json").exists()
    progress = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert len(progress) >= 9 and progress[-1].startswith("llm_baseline loop: 9/9 done")
    assert "3 failed" in progress[-1] and any("1 failed" in p for p in progress)  # the running error count

    up = servers()
    outd = run_baseline(tmp_path, up, sample)
    assert sorted(context_no(u) for u in up.sent) == [0, 3, 6]
    rows = [json.loads(x) for x in (outd / "responses.jsonl").read_text().splitlines()]
    assert [r["response"] for r in rows] == [f"You will love Film {i}!" for i in range(9)]
    summary = json.loads((outd / "summary.json").read_text())
    assert summary["request_errors"] == 0 and summary["empty_replies"] == 0


def test_a_server_on_another_port_reuses_the_cache(tmp_path, servers):
    sample, _ = write_sample(tmp_path, n=5)
    first = servers()
    a = run_baseline(tmp_path, first, sample, out="a")
    assert len(first.sent) == 5
    second = servers()  # a restarted server: another port, same model
    assert second.url != first.url
    b = run_baseline(tmp_path, second, sample, out="b")
    assert second.sent == []
    assert (a / "responses.jsonl").read_text() == (b / "responses.jsonl").read_text()


def test_an_echoed_api_key_is_redacted_in_the_cache_and_the_outputs(tmp_path, servers, monkeypatch):
    monkeypatch.setenv("ECRFLOW_LOOP_KEY", SECRET)
    sample, _ = write_sample(tmp_path, n=3)
    server = servers(lambda user, n: ("echo_key",))
    outd = run_baseline(tmp_path, server, sample, api_key_env="ECRFLOW_LOOP_KEY")
    shards = list((tmp_path / "bcache").iterdir())
    assert shards and all(SECRET not in p.read_text() for p in shards)
    assert all("Bearer ***" in line for p in shards for line in p.read_text().splitlines())
    assert SECRET not in (outd / "responses.jsonl").read_text() and SECRET not in (outd / "summary.json").read_text()


# -- emotion annotation --------------------------------------------------------------------------------------


def write_dialogs(tmp_path, unicrs_record, n=6):
    """One dialogue whose seeker messages are "message 0", "message 1", ...: n utterances to annotate."""
    rec = json.loads(json.dumps(unicrs_record))
    seeker, other = rec["initiatorWorkerId"], rec["respondentWorkerId"]
    template = rec["messages"][0]
    rec["messages"] = [{**template, "senderWorkerId": who, "messageId": k,
                        "text": f"message {k // 2}" if who == seeker else "ok"}
                       for k, who in enumerate([seeker, other] * n)]
    path = tmp_path / "dialogs.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    return path


def run_annotate(tmp_path, server, dialogs, out="ann", **kw):
    outd = tmp_path / out
    outd.mkdir(exist_ok=True)
    emotion_annotate(dialogs, annotations_out=outd / "annotations.jsonl", summary_out=outd / "summary.json",
                     cache_dir=tmp_path / "acache",
                     options={"llm": http_llm(server, **kw), "split": "train", "utterances": 100, "max_history": 0,
                              "constrained": False, "batch_size": 4, "seed": 0, "max_attempts": 3})
    return outd


def test_annotation_outage_labels_nothing_and_a_rerun_sends_only_the_missing(tmp_path, servers, unicrs_record):
    dialogs = write_dialogs(tmp_path, unicrs_record)
    down = servers(fail_contexts({2, 5}, ("status", 502)))
    with pytest.raises(StageIncomplete, match="sent 6, answered 4, failed 2, unparseable 0"):
        run_annotate(tmp_path, down, dialogs)
    assert not (tmp_path / "ann" / "annotations.jsonl").exists()
    up = servers()
    outd = run_annotate(tmp_path, up, dialogs)
    assert sorted(context_no(u) for u in up.sent) == [2, 5]
    rows = [json.loads(x) for x in (outd / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["labels"] == ["happy", "curious"] and r["error"] is None for r in rows)


def test_gibberish_is_kept_flagged_and_asked_again_on_a_rerun(tmp_path, servers, unicrs_record):
    dialogs = write_dialogs(tmp_path, unicrs_record)
    broken = servers(lambda user, n: ("gibberish",) if context_no(user) == 3 else None)
    outd = run_annotate(tmp_path, broken, dialogs)
    asked = [u for u in broken.sent if context_no(u) == 3]
    assert len(asked) == 3 and len(set(asked)) == 3  # max_attempts prompts, each a new request
    summary = json.loads((outd / "summary.json").read_text())
    assert summary["unparseable"] == 1 and summary["labelled"] == 5 and summary["request_errors"] == 0
    cached = [json.loads(x) for p in (tmp_path / "acache").iterdir() for x in p.read_text().splitlines()]
    assert sum(1 for c in cached if c.get("unparseable")) == 3  # kept for the report, flagged
    assert all(c["text"] == "lorem ipsum dolor sit amet" for c in cached if c.get("unparseable"))

    fixed = servers()
    outd = run_annotate(tmp_path, fixed, dialogs, out="ann2")  # the job rerun (-R, or outputs removed)
    assert fixed.sent == [asked[0]]  # not a cached success: asked again, from attempt 1; nothing else sent
    summary = json.loads((outd / "summary.json").read_text())
    assert summary["unparseable"] == 0 and summary["labelled"] == 6
    again = servers()
    run_annotate(tmp_path, again, dialogs, out="ann3")
    assert again.sent == []


def test_judge_replays_a_parsed_second_attempt_from_the_cache(tmp_path, servers):
    sample, other = write_sample(tmp_path, n=4)
    first = []  # gibberish only to the first prompt about context 2

    def fail(user, n):
        if context_no(user) == 2 and not first:
            first.append(user)
            return ("gibberish",)
        return None

    once = servers(fail)
    outd = run_judge(tmp_path, once, sample, other)
    assert sorted(context_no(u) for u in once.sent) == [0, 1, 2, 2, 3]  # attempt 2: a reshuffled prompt
    summary = json.loads((outd / "summary.json").read_text())
    assert [a["unparseable"] for a in summary["attempts"]] == [1, 0] and summary["judged"] == 4
    again = servers()
    run_judge(tmp_path, again, sample, other, out="out2")
    assert again.sent == []  # its attempt-2 answer parsed: the unparseable attempt 1 is not asked again


# -- Retry-After and the circuit breaker ---------------------------------------------------------------------


def ask(text: str) -> Request:
    return Request((("user", text),), max_tokens=8)


def test_retry_after_as_an_http_date_and_as_seconds_is_waited(servers):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    plan = {"a": [("status", 429, {"Retry-After": when})], "b": [("status", 503, {"Retry-After": "7"})],
            "c": [("status", 429, {"Retry-After": email.utils.formatdate(time.time() + 9999, usegmt=True)})]}
    server = servers(lambda user, n: plan[user][n] if n < len(plan[user]) else None)
    backend = OpenAIBackend(server.url, "loop-model", timeout=2, max_retries=2, backoff=0.001, concurrency=1,
                            max_retry_wait=120)
    waits = []
    backend._sleep = waits.append  # no real waiting in a test
    out = backend.generate([ask("a"), ask("b"), ask("c")])
    assert [r.text for r in out] == ["happy, curious"] * 3
    assert 28 <= waits[0] <= 30.5 and waits[1] == 7 and waits[2] == 120
    assert server.sent == ["a", "a", "b", "b", "c", "c"]


def test_the_breaker_stops_a_stage_after_n_consecutive_timeouts(tmp_path, servers, unicrs_record):
    dialogs = write_dialogs(tmp_path, unicrs_record)
    dead = servers(lambda user, n: ("hang",))
    t0 = time.monotonic()
    with pytest.raises(StageIncomplete) as err:
        run_annotate(tmp_path, dead, dialogs, timeout=0.3, max_retries=5, concurrency=1, max_consecutive_failures=3)
    elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert f"the endpoint {dead.url} gave no answer to 3 consecutive attempts" in msg
    assert "6 of 6 items have no answer" in msg and "rerun the same snakemake command" in msg
    assert len(dead.sent) == 3  # then nothing more: without the breaker, 6 utterances x 6 attempts
    assert elapsed < 3, elapsed  # ~3 timeouts, not 36
    assert not (tmp_path / "ann" / "annotations.jsonl").exists()


def test_the_breaker_resets_on_any_http_answer(servers):
    # timeouts, then a 503 (an answer: the server is there), then timeouts: never 3 in a row
    plan = [("hang",), ("hang",), ("status", 503), ("hang",), ("hang",), None]
    server = servers(lambda user, n: plan[n])
    backend = OpenAIBackend(server.url, "loop-model", timeout=0.3, max_retries=5, backoff=0.001, concurrency=1,
                            max_consecutive_failures=3)
    backend._sleep = lambda s: None
    assert backend.generate([ask("x")])[0].text == "happy, curious" and len(server.sent) == 6
