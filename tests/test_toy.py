"""The toy generator: real formats, determinism, ReDial-like proportions, and a learnable signal."""

import json
from collections import Counter

import pytest

from ecrflow.data.toy import ToyConfig, generate

from conftest import FIXTURES


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy")
    generate(path, ToyConfig())
    return path


def _dialogs(path, split="train"):
    return [json.loads(line) for line in (path / f"{split}_data_dbpedia_emo.jsonl").read_text().splitlines()]


def test_same_seed_same_bytes_other_seed_differs(toy, tmp_path):
    generate(tmp_path / "a", ToyConfig())
    generate(tmp_path / "b", ToyConfig(seed=8))
    for name in ("train_data_dbpedia_emo.jsonl", "entity2id.json", "movie_reviews_filted_0.1_confi.json"):
        assert (toy / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
    assert (toy / "train_data_dbpedia_emo.jsonl").read_bytes() != (tmp_path / "b" / "train_data_dbpedia_emo.jsonl").read_bytes()


def test_keys_match_the_real_release(toy):
    real = json.loads((FIXTURES / "ecr_emo_dialog.jsonl").read_text())
    real_seeker = next(m for m in real["messages"] if "emotion" in m)
    real_rec = next(m for m in real["messages"] if "emotion" not in m)
    for d in _dialogs(toy)[:50]:
        assert set(d) == set(real)
        for m in d["messages"]:
            assert set(m) == set(real_seeker if m["senderWorkerId"] == d["initiatorWorkerId"] else real_rec)
            if isinstance(m.get("emotion"), dict):
                assert list(m["emotion"].values()) == sorted(m["emotion"].values(), reverse=True)
                assert len(m["emotion"]) == 9
    relation2id = json.loads((toy / "relation2id.json").read_text())
    assert relation2id["self_loop"] == len(relation2id) - 1 and len(relation2id) >= 6
    subkg = json.loads((toy / "dbpedia_subkg.json").read_text())
    assert all(edges[0] == [relation2id["self_loop"], int(h)] for h, edges in subkg.items())


def test_feedback_proportions_and_emotions_follow_feedback(toy):
    liked, reaction = Counter(), {0: Counter(), 1: Counter()}
    for d in _dialogs(toy):
        msgs = d["messages"]
        for q in d["initiatorQuestions"].values():
            if q["suggested"] == 1:
                liked[q["liked"]] += 1
        for k, m in enumerate(msgs[:-1]):
            if m["senderWorkerId"] != d["initiatorWorkerId"] and m["movie"]:
                nxt = msgs[k + 1]
                rid = m["text"].split("@")[1].split()[0].rstrip("?,")
                q = d["initiatorQuestions"].get(rid)
                if q and q["liked"] in (0, 1) and isinstance(nxt.get("emotion"), dict):
                    reaction[q["liked"]][next(iter(nxt["emotion"]))] += 1
    total = sum(liked.values())
    assert 0.02 < liked[0] / total < 0.10  # ReDial: 4.9 % disliked
    assert 0.05 < liked[2] / total < 0.25  # ReDial: 14 % not said
    assert reaction[0].most_common(1)[0][0] == "negative"
    assert reaction[1]["negative"] == 0 and reaction[1]["like"] + reaction[1]["happy"] > 0.6 * sum(reaction[1].values())


def test_both_roles_open_dialogs_and_quirks_exist(toy):
    dialogs = _dialogs(toy)
    openers = Counter(d["messages"][0]["senderWorkerId"] == d["initiatorWorkerId"] for d in dialogs)
    assert openers[True] > 50 and openers[False] > 50
    assert any("  (" in name for d in dialogs for name in d["movieMentions"].values())
    assert any(m.get("emotion") == [] for d in dialogs for m in d["messages"])
    reviews = json.loads((toy / "movie_reviews_filted_0.1_confi.json").read_text())
    texts = [r["content"][0] for revs in reviews.values() for r in revs]
    assert any("2010" in t for t in texts) and any("10 out of 10" in t for t in texts)
    # Reviews are annotated with the URIs of the movie's KG neighbours.
    entity2id = json.loads((toy / "entity2id.json").read_text())
    annotated = [u for revs in reviews.values() for r in revs for u, _ in r["content_e_0.1"]]
    assert annotated and all(u in entity2id for u in annotated)
