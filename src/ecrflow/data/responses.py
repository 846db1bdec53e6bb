"""UniCRS recommendation responses u_r from the reference's positional files (ECR_SPEC 1.4, 3.3).

The ECR release ships ``conv_unicrs_{split}.jsonl``: one ``{"pred": ..., "label": ...}`` line per recommender
turn that has a real context, in file order. The reference's ``merge.py`` pastes them into the processed
samples by position. Here they are read once, aligned to the keyed recommendation rows of the same split
(``dialog_id``, ``turn``), and the count is checked, so no later step depends on line order again.

As in merge.py: ``resp_all`` is the generated text after the last ``"System: "``; ``resp`` is ``resp_all`` when
it contains the ``<movie>`` slot, else ``''``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..constants import MOVIE_TOKEN
from ..errors import InputError
from ..io import iter_jsonl

RESPONSE_SCHEMA = pa.schema([
    ("dialog_id", pa.string()),
    ("turn", pa.int32()),
    ("resp_all", pa.string()),
    ("resp", pa.string()),
    ("label", pa.string()),
])


def _after_system(text: str) -> str:
    return text.split("System: ")[-1].strip()


def _squash(text: str) -> str:
    return "".join(text.lower().split())


def read_unicrs_responses(path, rec: pa.Table) -> tuple[pa.Table, dict]:
    """Keyed responses for the rows of ``rec`` with a context; returns (table, counts)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", hint="conv_unicrs_{split}.jsonl comes with the ECR data release; "
                         "set data.unicrs_responses: null if you do not have it")
    preds = []
    for line_no, obj in iter_jsonl(path, expected='one {"pred": str, "label": str} object per line'):
        if not isinstance(obj, dict) or not isinstance(obj.get("pred"), str):
            raise InputError(path, 'expected {"pred": str, "label": str}', line=line_no)
        preds.append((obj["pred"], str(obj.get("label", ""))))
    keys = [(r["dialog_id"], r["turn"], r["resp"]) for r in rec.select(["dialog_id", "turn", "context", "resp"]).to_pylist()
            if r["context"]]
    if len(keys) != len(preds):
        raise InputError(path, f"{len(preds)} responses for {len(keys)} recommender turns with a context; the file "
                         f"must have one line per such turn, in file order (is it the same split and data version?)")
    rows, mismatched = [], 0
    for (did, turn, gold), (pred, label) in zip(keys, preds):
        resp_all = _after_system(pred)
        rows.append({"dialog_id": did, "turn": turn, "resp_all": resp_all,
                     "resp": resp_all if MOVIE_TOKEN in resp_all else "", "label": label})
        # A sanity check of the alignment: the label is the gold (masked) response.
        if label and _squash(_after_system(label)) != _squash(gold):
            mismatched += 1
    counts = {"responses": len(rows), "with_movie_slot": sum(bool(r["resp"]) for r in rows),
              "label_mismatches": mismatched}
    return pa.Table.from_pylist(rows, schema=RESPONSE_SCHEMA), counts
