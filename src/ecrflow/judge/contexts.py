"""What the judge, the LLM baselines and the critic see of a recommender turn: the dialogue history before
it, the item ECR recommends there, and each system's reply; and the seeded sample of turns that is judged
(the paper: 1,000 random test samples)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from ..constants import SEEKER
from ..io import iter_jsonl

ROLE_NAMES = {SEEKER: "User", "recommender": "Recommender"}
UNICRS = "unicrs"  # the recommendation response u_r alone, judged as a system
# Calibration rows (judge.calibration): the dataset's human reply and the same reply with its words shuffled,
# judged in the same prompts as the systems. A judge that does not score the first above the second cannot
# tell a reply from word salad, and its scores of the systems are not evidence.
HUMAN = "human"
SHUFFLED = "human_shuffled"
CALIBRATION = (HUMAN, SHUFFLED)
MIN_REFERENCE_WORDS = 4  # shorter references ("ok", "yes!") have no word order to break


def history_text(context: list[str], roles: list[str], max_history: int) -> str:
    """The last ``max_history`` messages, one per line, as "User: ..." / "Recommender: ..."."""
    lines = [f"{ROLE_NAMES.get(r, 'Recommender')}: {' '.join(t.split())}" for t, r in zip(context, roles)]
    return "\n".join(lines[-max_history:]) if max_history > 0 else ""


def read_generated(path) -> dict[tuple[str, int], dict]:
    """A generator's response file (generate_responses) keyed by (dialog_id, turn)."""
    return {(r["dialog_id"], int(r["turn"])): r for _, r in iter_jsonl(path, expected="a response object")}


def build_sample(rec_table, generated: dict[str, str], *, n: int, seed: int, max_history: int) -> list[dict]:
    """A seeded sample of ``n`` turns that every generator answered (all of them when fewer), in file order.

    Each row: dialog_id, turn, history (text), item (entity id), item_name, u_r (the recommendation
    response, i.e. the UniCRS system's reply) and the reference reply of the dataset."""
    files = {kind: read_generated(path) for kind, path in generated.items()}
    if not files:
        raise ValueError("the judge sample needs at least one generator's responses (generation.kinds is empty)")
    first = next(iter(files.values()))
    keys = [k for k in first if all(k in f for f in files.values())]
    rec = {(r["dialog_id"], int(r["turn"])): r for r in
           pq.read_table(rec_table, columns=["dialog_id", "turn", "context", "context_roles"]).to_pylist()}
    keys = [k for k in keys if k in rec and rec[k]["context"]]
    if len(keys) > n:
        keep = np.sort(np.random.default_rng(seed).choice(len(keys), size=n, replace=False))
        keys = [keys[i] for i in keep]
    rows = []
    for key in keys:
        g = first[key]
        r = rec[key]
        rows.append({"dialog_id": key[0], "turn": key[1],
                     "history": history_text(r["context"], r["context_roles"], max_history),
                     "item": int(g["item"]), "item_name": g["item_name"], "u_r": g["u_r"],
                     "reference": g.get("reference", "")})
    return rows


def shuffle_words(text: str, key: str) -> str:
    """The words of ``text`` in a seeded order (seeded by ``key``) that differs from the original wherever
    the words are not all the same."""
    import zlib

    words = text.split()
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    for _ in range(10):
        out = [words[i] for i in rng.permutation(len(words))]
        if out != words:
            return " ".join(out)
    return " ".join(words[1:] + words[:1])


def read_sample(path) -> list[dict]:
    return [r for _, r in iter_jsonl(path, expected="a judge context object")]


def system_replies(sample_rows: list[dict], files: dict[str, str]) -> dict[str, dict[tuple[str, int], str]]:
    """Each judged system's reply per (dialog_id, turn): ``unicrs`` is u_r from the sample, ``human`` and
    ``human_shuffled`` the sample's reference reply (of at least MIN_REFERENCE_WORDS words) and its shuffled
    words, the others come from their response files (field ``response``)."""
    out = {}
    for system, path in files.items():
        if system == UNICRS:
            out[system] = {(r["dialog_id"], int(r["turn"])): r["u_r"] for r in sample_rows}
        elif system in CALIBRATION:
            refs = {(r["dialog_id"], int(r["turn"])): " ".join(r.get("reference", "").split()) for r in sample_rows}
            refs = {k: t for k, t in refs.items() if len(t.split()) >= MIN_REFERENCE_WORDS}
            out[system] = refs if system == HUMAN else {k: shuffle_words(t, f"{k[0]}/{k[1]}") for k, t in refs.items()}
        else:
            out[system] = {k: r["response"] for k, r in read_generated(path).items()}
    return out
