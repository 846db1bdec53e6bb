"""Item (movie) ids: the candidate set for ranking (ECR_SPEC 1.2 ``item_ids.json``).

As in the reference, the items are every movie mentioned by either role in any split. Ids are sorted, so
the item order (and the column order of every score matrix over items) is reproducible.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from ..constants import SPLITS

ITEMS_SCHEMA = pa.schema([
    ("entity_id", pa.int64()),
    ("uri", pa.string()),
    ("name", pa.string()),  # the most frequent ReDial name ("Title (Year)")
    ("mentions_train", pa.int32()),
    ("mentions_valid", pa.int32()),
    ("mentions_test", pa.int32()),
    ("rec_train", pa.int32()),  # times recommended in a training recommender turn
])


def build_items(sequences: dict[str, pa.Table], train_rec: pa.Table, entity2id: dict[str, int]) -> pa.Table:
    uri_of = {i: u for u, i in entity2id.items()}
    mentions = {s: Counter() for s in SPLITS}
    names: dict[int, Counter] = {}
    for split, table in sequences.items():
        for ents, is_movie, nm in zip(table.column("entity").to_pylist(), table.column("entity_is_movie").to_pylist(),
                                      table.column("entity_name").to_pylist()):
            for e, m, n in zip(ents, is_movie, nm):
                if m:
                    mentions[split][e] += 1
                    if n is not None:
                        names.setdefault(e, Counter())[n] += 1
    rec_train = Counter(i for items in train_rec.column("rec").to_pylist() for i in items)
    item_ids = sorted(set().union(*(set(c) for c in mentions.values())))
    rows = [{
        "entity_id": e,
        "uri": uri_of[e],
        "name": names[e].most_common(1)[0][0] if e in names else None,
        "mentions_train": mentions["train"][e],
        "mentions_valid": mentions["valid"][e],
        "mentions_test": mentions["test"][e],
        "rec_train": rec_train[e],
    } for e in item_ids]
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)
