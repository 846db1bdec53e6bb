"""Emotion-filtered entity co-occurrence: the "global entities" of ECR (ECR_SPEC 3.7, paper Eq. 5).

For every training dialog, take its chronological entity list (both roles, each entity with the emotion
labels attached to it, ECR_SPEC 2). Every ordered pair of positions (i, j) with i before j counts one
co-occurrence e_i -> e_j when both label lists are non-empty and their first ``top_n`` labels share at least
one label (n_y = 3). Self pairs and pairs inside one turn count, as in the reference. Rows are normalised to
P(e_j | e_i); rows without pairs are zero.

The reference holds this as a dense n_ent x n_ent float table in RAM (about 3.6 GB for ReDial's ~30k
entities) rebuilt on every start; here it is a sparse count matrix written once to a file
(``scipy.sparse.save_npz``, no pickle), with each dialog's own counts in a side table so that a training
sample can leave its own dialog out (``leave_dialog_out``): the reference lets a context entity's global row
point at the item recommended later in the same dialog (ECR_SPEC 3.7 leakage note).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from .constants import EMOTION_INDEX
from .io import atomic_path, write_parquet

CONTRIB_SCHEMA = pa.schema([
    ("dialog_id", pa.string()),
    ("src", pa.int32()),
    ("dst", pa.int32()),
    ("count", pa.int32()),
])


def label_mask(labels: list[str], top_n: int) -> int:
    """Bit mask of the first ``top_n`` labels of an entity (0 when it has none)."""
    mask = 0
    for lab in labels[:top_n]:
        mask |= 1 << EMOTION_INDEX[lab]
    return mask


def dialog_pairs(entity: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) of every counted pair i < j of one dialog's entity sequence."""
    m = len(entity)
    if m < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i, j = np.triu_indices(m, k=1)
    keep = (masks[i] & masks[j]) != 0
    return entity[i[keep]], entity[j[keep]]


@dataclass
class CoOccurrenceCounts:
    counts: sp.csr_matrix  # n_entity x n_entity, int counts over all training dialogs
    contributions: pa.Table  # per-dialog counts (dialog_id, src, dst, count)


def count_cooccurrence(sequences: pa.Table, n_entity: int, top_n: int = 3,
                       emotion_filter: bool = True) -> CoOccurrenceCounts:
    """Count emotion-compatible ordered pairs over the dialogs of a ``sequences`` table. Without
    ``emotion_filter`` (dialogues without emotion labels, ``data.emotions: none``) every ordered pair counts:
    the filter would otherwise leave the table empty and the global entities without content."""
    all_src, all_dst, parts = [], [], []
    dialog_ids = sequences.column("dialog_id").to_pylist()
    entities = sequences.column("entity").to_pylist()
    emotions = sequences.column("entity_emotions").to_pylist()
    for did, ents, labs in zip(dialog_ids, entities, emotions):
        ent = np.asarray(ents, dtype=np.int64)
        if emotion_filter:
            masks = np.fromiter((label_mask(x, top_n) for x in labs), dtype=np.int64, count=len(labs))
        else:
            masks = np.ones(len(ent), dtype=np.int64)
        src, dst = dialog_pairs(ent, masks)
        if len(src) == 0:
            continue
        all_src.append(src)
        all_dst.append(dst)
        # This dialog's own counts, aggregated per (src, dst).
        key, cnt = np.unique(src * n_entity + dst, return_counts=True)
        parts.append((did, key // n_entity, key % n_entity, cnt))
    src = np.concatenate(all_src) if all_src else np.empty(0, np.int64)
    dst = np.concatenate(all_dst) if all_dst else np.empty(0, np.int64)
    counts = sp.coo_matrix((np.ones(len(src), dtype=np.int32), (src, dst)), shape=(n_entity, n_entity)).tocsr()
    counts.sum_duplicates()
    contrib = pa.table({
        "dialog_id": pa.array([d for d, s, _, _ in parts for _ in range(len(s))], pa.string()),
        "src": pa.array(np.concatenate([s for _, s, _, _ in parts]) if parts else [], pa.int32()),
        "dst": pa.array(np.concatenate([t for _, _, t, _ in parts]) if parts else [], pa.int32()),
        "count": pa.array(np.concatenate([c for _, _, _, c in parts]) if parts else [], pa.int32()),
    }, schema=CONTRIB_SCHEMA)
    return CoOccurrenceCounts(counts, contrib)


def save_counts(matrix_path, contrib_path, result: CoOccurrenceCounts) -> None:
    with atomic_path(matrix_path) as tmp:
        with open(tmp, "wb") as f:
            sp.save_npz(f, result.counts, compressed=True)
    write_parquet(contrib_path, result.contributions)


def row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float32)
    sums = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ m)


class CoOccurrence:
    """Global-entity rows P(. | e), optionally leaving one dialog's own counts out."""

    def __init__(self, counts: sp.csr_matrix, contributions: pa.Table | None = None):
        self.counts = sp.csr_matrix(counts)
        self._by_dialog: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if contributions is not None and contributions.num_rows:
            ids = np.asarray(contributions.column("dialog_id").to_pylist(), dtype=object)
            src = contributions.column("src").to_numpy()
            dst = contributions.column("dst").to_numpy()
            cnt = contributions.column("count").to_numpy()
            order = np.argsort(ids, kind="stable")
            ids, src, dst, cnt = ids[order], src[order], dst[order], cnt[order]
            bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
                s = src[lo:hi]
                o = np.argsort(s, kind="stable")
                self._by_dialog[ids[lo]] = (s[o], dst[lo:hi][o], cnt[lo:hi][o])

    @classmethod
    def load(cls, matrix_path, contrib_path=None) -> "CoOccurrence":
        import pyarrow.parquet as pq

        counts = sp.load_npz(matrix_path)
        contrib = pq.read_table(contrib_path) if contrib_path is not None else None
        return cls(counts, contrib)

    @property
    def n_entity(self) -> int:
        return self.counts.shape[0]

    def normalised(self) -> sp.csr_matrix:
        return row_normalise(self.counts)

    def rows(self, entity_ids, exclude_dialog: str | None = None) -> sp.csr_matrix:
        """Row-normalised global rows for ``entity_ids`` (len(ids) x n_entity); with ``exclude_dialog``, the
        counts of that dialog are subtracted first (leave-dialog-out)."""
        ids = np.asarray(entity_ids, dtype=np.int64)
        m = self.counts[ids].astype(np.float32)
        if exclude_dialog is not None and exclude_dialog in self._by_dialog:
            src, dst, cnt = self._by_dialog[exclude_dialog]
            lo = np.searchsorted(src, ids, side="left")
            hi = np.searchsorted(src, ids, side="right")
            r = np.concatenate([np.full(h - l, k) for k, (l, h) in enumerate(zip(lo, hi))]) if len(ids) else []
            sel = np.concatenate([np.arange(l, h) for l, h in zip(lo, hi)]) if len(ids) else []
            if len(sel):
                own = sp.csr_matrix((cnt[sel].astype(np.float32), (r, dst[sel])), shape=m.shape)
                m = m - own
                m.eliminate_zeros()
        return row_normalise(m)
