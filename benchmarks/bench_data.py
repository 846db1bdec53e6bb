"""Data-stage benchmark: co-occurrence build time and peak memory at ReDial size, processing time per 1k dialogs.

    python benchmarks/bench_data.py [--entities 30000] [--dialogs 10000] [--positions 20]

The co-occurrence input is synthetic at ReDial's scale (30k entities, 10k training dialogs, about 20 entity
mentions per dialog with 1-3 emotion labels drawn with the paper's label shares). Processing is timed on
generated toy dialogs in the real file format. Each measurement runs in a fresh process, so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cooccurrence(n_entity: int, n_dialogs: int, positions: int, seed: int, q: mp.Queue) -> None:
    import numpy as np
    import pyarrow as pa

    from ecrflow.constants import EMOTIONS
    from ecrflow.cooccurrence import CoOccurrence, count_cooccurrence
    from ecrflow.data.process import SEQUENCE_SCHEMA

    rng = np.random.default_rng(seed)
    shares = np.array([46, 41, 22, 20, 8, 6, 3, 3, 3], dtype=float)  # paper Table 8, in EMOTIONS order
    shares /= shares.sum()
    popularity = 1.0 / np.arange(1, n_entity + 1) ** 0.8  # entity mentions are skewed, as in ReDial
    popularity /= popularity.sum()
    rows = []
    for d in range(n_dialogs):
        m = int(rng.poisson(positions))
        ents = rng.choice(n_entity, size=m, p=popularity)
        labels = [[EMOTIONS[i] for i in rng.choice(9, size=int(rng.integers(0, 4)), replace=False, p=shares)]
                  for _ in range(m)]
        rows.append({"dialog_id": str(d), "entity": ents.tolist(), "entity_turn": list(range(m)),
                     "entity_is_movie": [False] * m, "entity_name": [None] * m, "entity_emotions": labels,
                     "entity_emotion_probs": [[0.5] * len(x) for x in labels]})
    table = pa.Table.from_pylist(rows, schema=SEQUENCE_SCHEMA)
    del rows
    base = _rss_mb()
    t0 = time.perf_counter()
    res = count_cooccurrence(table, n_entity + 1, top_n=3)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    cooc = CoOccurrence(res.counts, res.contributions)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    for d in range(200):
        cooc.rows(rng.choice(n_entity, size=32), exclude_dialog=str(d))
    t_rows = (time.perf_counter() - t0) / 200
    q.put({"build_s": t_build, "index_s": t_index, "rows_ms": 1000 * t_rows, "nnz": int(res.counts.nnz),
           "pairs": int(res.counts.sum()), "rss_before_mb": base, "peak_rss_mb": _rss_mb()})


def _processing(n_dialogs: int, q: mp.Queue) -> None:
    from ecrflow.data.process import process_split
    from ecrflow.data.toy import ToyConfig, generate
    from ecrflow.data.turns import EmotionRule
    from ecrflow.kg import load_id_map

    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, ToyConfig(n_dialogs={"train": n_dialogs, "valid": 1, "test": 1}, max_reviews_per_movie=0))
        e2i = load_id_map(Path(tmp) / "entity2id.json", "entity")
        t0 = time.perf_counter()
        tables = process_split(Path(tmp) / "train_data_dbpedia_emo.jsonl", e2i, EmotionRule(), require_emotion=True)
        dt = time.perf_counter() - t0
    q.put({"seconds": dt, "per_1k_s": dt / n_dialogs * 1000, "turns": tables["pretrain"].num_rows,
           "peak_rss_mb": _rss_mb()})


def _in_child(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=30000)
    ap.add_argument("--dialogs", type=int, default=10000)
    ap.add_argument("--positions", type=int, default=20, help="mean entity mentions per dialog")
    ap.add_argument("--process-dialogs", type=int, default=5000)
    args = ap.parse_args()

    c = _in_child(_cooccurrence, args.entities, args.dialogs, args.positions, 0)
    dense_gb = (args.entities + 2) ** 2 * 4 / 1e9
    print(f"co-occurrence, {args.entities} entities x {args.dialogs} dialogs (~{args.positions} mentions each):")
    print(f"  build            {c['build_s']:8.2f} s   ({c['pairs']:,} pairs, {c['nnz']:,} non-zeros)")
    print(f"  peak RSS         {c['peak_rss_mb']:8.0f} MB  (input table loaded: {c['rss_before_mb']:.0f} MB; "
          f"a dense float32 table as in the reference: {dense_gb:.1f} GB)")
    print(f"  leave-dialog-out index {c['index_s']:.2f} s; rows() for 32 entities {c['rows_ms']:.2f} ms")
    p = _in_child(_processing, args.process_dialogs)
    print(f"processing, {args.process_dialogs} toy dialogs ({p['turns']} turns):")
    print(f"  {p['seconds']:.2f} s in all, {p['per_1k_s']:.2f} s per 1k dialogs, peak RSS {p['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
