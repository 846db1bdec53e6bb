"""Getting the inputs: raw files from a loopback file server (verified against the config or the lock,
unpacked, never downloaded twice), hub models from a loopback hub at a pinned revision, and the
``ecrflow fetch`` command over both."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from ecrflow import fetch as fetch_mod
from ecrflow.fetch import FetchError, Source, fetch_all, read_lock, unpack
from servers import FileServer, HubServer

REPO = Path(__file__).resolve().parents[1]


def _zip(files: dict[str, bytes], top: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"{top}/{name}" if top else name, data)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


RELEASE = {"train.jsonl": b'{"a": 1}\n', "entity2id.json": b'{"<x>": 0}'}
GOOD = _zip(RELEASE, top="emo_data")  # one top-level folder, as release archives have


def _entry(server, name, file, sha=None, size=None, unpack_to=None):
    return {"name": name, "url": f"{server.url}/{file}", "file": file, "sha256": sha, "size": size,
            "unpack_to": unpack_to}


def test_good_file_is_verified_unpacked_and_not_downloaded_again(tmp_path):
    with FileServer({"emo_data.zip": GOOD}) as server:
        entry = _entry(server, "ecr", "emo_data.zip", sha=_sha(GOOD), size=len(GOOD), unpack_to=str(tmp_path / "raw"))
        fetch_all([entry], tmp_path / "dl", tmp_path / "lock.json")
        assert server.requests == ["GET /emo_data.zip"]
        # the single top folder is dropped: the files land in unpack_to itself
        assert {p.name: p.read_bytes() for p in (tmp_path / "raw").iterdir() if not p.name.startswith(".")} == RELEASE
        assert read_lock(tmp_path / "lock.json")["data"]["ecr"] == {
            "url": entry["url"], "file": "emo_data.zip", "sha256": _sha(GOOD), "size": len(GOOD)}
        fetch_all([entry], tmp_path / "dl", tmp_path / "lock.json")
        assert len(server.requests) == 1  # present and verified: not downloaded again
        assert not list((tmp_path / "dl").glob("*.part"))


def test_corrupted_download_fails_naming_file_and_both_checksums(tmp_path):
    corrupt = GOOD[:-10] + b"0123456789"
    with FileServer({"emo_data.zip": corrupt}) as server:
        entry = _entry(server, "ecr", "emo_data.zip", sha=_sha(GOOD), unpack_to=str(tmp_path / "raw"))
        with pytest.raises(FetchError) as e:
            fetch_all([entry], tmp_path / "dl", tmp_path / "lock.json")
    msg = str(e.value)
    assert "emo_data.zip" in msg and f"expected {_sha(GOOD)}" in msg and f"found {_sha(corrupt)}" in msg
    assert not (tmp_path / "dl" / "emo_data.zip").exists() and not (tmp_path / "raw").exists()
    assert read_lock(tmp_path / "lock.json")["data"] == {}  # a wrong file is never recorded


def test_interrupted_download_leaves_nothing_and_a_rerun_completes(tmp_path):
    with FileServer({"emo_data.zip": GOOD}, truncate={"emo_data.zip"}) as server:
        entry = _entry(server, "ecr", "emo_data.zip", unpack_to=str(tmp_path / "raw"))
        with pytest.raises(FetchError, match=rf"interrupted after \d+ of {len(GOOD)} bytes"):
            fetch_all([entry], tmp_path / "dl", tmp_path / "lock.json")
        assert not list((tmp_path / "dl").glob("*")), "no partial file may stay behind"
        server.truncate.clear()
        fetch_all([entry], tmp_path / "dl", tmp_path / "lock.json")
    assert (tmp_path / "raw" / "train.jsonl").read_bytes() == RELEASE["train.jsonl"]


def test_first_download_is_recorded_in_the_lock_and_checked_afterwards(tmp_path):
    with FileServer({"emo_data.zip": GOOD}) as server:
        entry = _entry(server, "ecr", "emo_data.zip", unpack_to=str(tmp_path / "raw"))
        fetch_all([entry], tmp_path / "dl", tmp_path / "lock.json")
    assert read_lock(tmp_path / "lock.json")["data"]["ecr"]["sha256"] == _sha(GOOD)
    # the kept archive changes on disk (a different release copied over it): the lock catches it
    (tmp_path / "dl" / "emo_data.zip").write_bytes(_zip({"train.jsonl": b"other\n"}))
    with pytest.raises(FetchError, match=rf"size \d+ bytes, expected {len(GOOD)} \(from the lock\)"):
        fetch_all([entry], tmp_path / "dl", tmp_path / "lock.json")


def test_config_checksum_and_lock_must_agree_and_a_new_url_needs_a_new_entry(tmp_path):
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps({"data": {"ecr": {"url": "http://a/x.zip", "file": "x.zip", "sha256": "0" * 64,
                                                 "size": 1}}, "models": {}}))
    with pytest.raises(FetchError, match="the config's sha256 1{64} differs from the lock's 0{64}"):
        fetch_all([{"name": "ecr", "url": "http://a/x.zip", "file": "x.zip", "sha256": "1" * 64}], tmp_path, lock)
    with pytest.raises(FetchError, match="the lock records 'http://a/x.zip', the config names 'http://b/x.zip'"):
        fetch_all([{"name": "ecr", "url": "http://b/x.zip", "file": "x.zip"}], tmp_path, lock)


def test_one_bad_source_does_not_stop_the_others(tmp_path):
    other = b"plain file"
    with FileServer({"a.zip": GOOD, "b.txt": other}) as server:
        entries = [_entry(server, "a", "a.zip", sha="f" * 64), _entry(server, "b", "b.txt")]
        with pytest.raises(FetchError, match="a.zip: sha256 mismatch"):
            fetch_all(entries, tmp_path / "dl", tmp_path / "lock.json")
    assert (tmp_path / "dl" / "b.txt").read_bytes() == other
    assert set(read_lock(tmp_path / "lock.json")["data"]) == {"b"}


def test_google_drive_ids_go_to_gdown(tmp_path, monkeypatch):
    """Drive's confirmation page for large files is gdown's job; the id reaches it unchanged."""
    import gdown

    calls = []

    def fake(id, output, quiet):  # noqa: A002 (gdown's keyword)
        calls.append(id)
        Path(output).write_bytes(GOOD)
        return output

    monkeypatch.setattr(gdown, "download", fake)
    fetch_mod.download("gdrive:1fb9kDo8uSRLlwc5c4nUw8DZHR5XOY_l_", tmp_path / "emo_data.zip")
    assert calls == ["1fb9kDo8uSRLlwc5c4nUw8DZHR5XOY_l_"]
    assert (tmp_path / "emo_data.zip").read_bytes() == GOOD
    with pytest.raises(FetchError, match="unsupported URL"):
        fetch_mod.download("ftp://x/y.zip", tmp_path / "y.zip")


def test_tar_archives_unpack_and_a_plain_file_is_copied(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in RELEASE.items():
            info = tarfile.TarInfo(f"release/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    (tmp_path / "r.tar.gz").write_bytes(buf.getvalue())
    assert sorted(unpack(tmp_path / "r.tar.gz", tmp_path / "out")) == sorted(RELEASE)
    (tmp_path / "notes.json").write_bytes(b"{}")
    assert unpack(tmp_path / "notes.json", tmp_path / "out2") == ["notes.json"]


def test_the_paper_config_names_every_source_with_its_licence():
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    sources = [Source.from_config(e) for e in config["fetch"]["data"]]
    assert {s.name for s in sources} == {"ecr_emo_data", "redial"}
    assert all(s.source and s.licence for s in sources)
    ecr = next(s for s in sources if s.name == "ecr_emo_data")
    assert ecr.url == "gdrive:1fb9kDo8uSRLlwc5c4nUw8DZHR5XOY_l_" and ecr.unpack_to == config["data"]["raw_dir"]


# -- hub models ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0,
                               eos_token_id=0)).save_pretrained(folder)
    return folder


def _run(code: str, env: dict, cwd=None) -> subprocess.CompletedProcess:
    """A fresh interpreter: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when imported."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)


def _hub_env(hub, tmp_path) -> dict:
    return {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def test_hub_model_is_pinned_in_the_lock_and_loads_offline(tmp_path, tiny_repo):
    with HubServer({"ecrflow-test/tiny-gpt2": tiny_repo}) as hub:
        env = _hub_env(hub, tmp_path)
        code = ("from ecrflow.models.hub import fetch_model; import json; "
                "print(json.dumps(fetch_model('ecrflow-test/tiny-gpt2', 'out/tiny', {}, 'lock.json')))")
        proc = _run(code, env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        commit = hub.commits["ecrflow-test/tiny-gpt2"]
        assert json.loads(proc.stdout)["revision"] == commit
        assert "no pinned revision: recorded commit" in proc.stderr
        assert read_lock(tmp_path / "lock.json")["models"] == {"ecrflow-test/tiny-gpt2": {"revision": commit}}
        # the next download asks for the locked commit, not the branch
        before = len(hub.requests)
        assert _run(code, env, cwd=tmp_path).returncode == 0
        assert all(commit in r or "agent-harnesses" in r for r in hub.requests[before:]), hub.requests[before:]
    # the server is gone: a job loads the folder with the hub offline
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    load = ("from ecrflow.models.loading import load_pretrained; "
            "m = load_pretrained('causal_lm', 'out/tiny', 'models.plm'); print(m.config.n_embd)")
    proc = _run(load, offline, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "16", proc.stderr


def test_gated_model_says_what_to_do(tmp_path, tiny_repo):
    with HubServer({"ecrflow-test/tiny-gpt2": tiny_repo}, gated={"meta-llama/Llama-2-7b-chat-hf"}) as hub:
        proc = _run("from ecrflow.models.hub import fetch_model; "
                    "fetch_model('meta-llama/Llama-2-7b-chat-hf', 'out/llama', {}, 'lock.json')",
                    _hub_env(hub, tmp_path), cwd=tmp_path)
    assert proc.returncode != 0
    assert "meta-llama/Llama-2-7b-chat-hf is gated" in proc.stderr
    assert "accept the licence on https://huggingface.co/meta-llama/Llama-2-7b-chat-hf" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "lock.json").exists()


def test_ecrflow_fetch_gets_data_and_models_and_rejects_a_corrupted_file(tmp_path, tiny_repo):
    """The command over a config: one good archive, one corrupted (rejected with both checksums), the hub
    ids of models.*; a second run downloads nothing."""
    import yaml

    corrupt = b"not the release"
    with FileServer({"good.zip": GOOD, "bad.zip": corrupt}) as server, \
            HubServer({"ecrflow-test/tiny-gpt2": tiny_repo}) as hub:
        over = {"run": "fetched", "data": {"raw_dir": "data/raw"},
                "models": {k: "ecrflow-test/tiny-gpt2" for k in ("plm", "text_encoder", "generator_dialogpt",
                                                                 "generator_llama", "emotion_classifier", "critic")},
                "judge": {"baselines": []},  # the paper's Llama-2 baseline is an hf backend on a hub id
                "fetch": {"lock": "fetch.lock.json", "downloads": "dl", "revisions": {},
                          "data": [_entry(server, "good", "good.zip", unpack_to="data/raw"),
                                   _entry(server, "bad", "bad.zip", sha=_sha(GOOD))]}}
        (tmp_path / "over.yaml").write_text(yaml.safe_dump(over))
        cmd = [sys.executable, "-m", "ecrflow.cli", "fetch", "--base", str(REPO / "config" / "config.yaml"),
               "--configfile", "over.yaml"]
        env = _hub_env(hub, tmp_path)
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 1
        assert f"bad.zip: sha256 mismatch: expected {_sha(GOOD)}" in proc.stderr
        assert f"found {_sha(corrupt)}" in proc.stderr
        assert (tmp_path / "data" / "raw" / "train.jsonl").exists()
        lock = read_lock(tmp_path / "fetch.lock.json")
        assert set(lock["data"]) == {"good"}
        # the data failure stopped the command before the models: fetch them alone
        proc = subprocess.run([*cmd, "--models-only"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        folder = tmp_path / "results" / "models" / "hub" / "ecrflow-test--tiny-gpt2"
        assert (folder / "model.safetensors").exists()
        assert read_lock(tmp_path / "fetch.lock.json")["models"]["ecrflow-test/tiny-gpt2"]["revision"] == \
            hub.commits["ecrflow-test/tiny-gpt2"]
        before = (len(server.requests), len(hub.requests))
        proc = subprocess.run([*cmd, "--only", "good"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (len(server.requests), len(hub.requests)) == before  # all present and verified
        assert "present in results/models/hub/ecrflow-test--tiny-gpt2" in proc.stdout
