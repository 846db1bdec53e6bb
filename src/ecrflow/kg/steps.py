"""The knowledge-graph rules' steps (called by workflow/scripts), one function per rule of
workflow/rules/kg.smk, named as the rule: the RGCN tensors, the emotion-filtered co-occurrence."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq

from ..io import write_json
from . import load_id_map, load_kg, save_kg_tensors

log = logging.getLogger(__name__)


def kg_tensors(entity2id, relation2id, subkg, *, tensors, meta, entity2id_out, relation2id_out, reverse: str) -> None:
    kg, entity2id, relation2id = load_kg(entity2id, relation2id, subkg, reverse=reverse)
    save_kg_tensors(tensors, kg)
    write_json(entity2id_out, entity2id, indent=None)
    write_json(relation2id_out, relation2id)
    write_json(meta, {"n_entity": kg.n_entity, "pad_entity": kg.pad_entity, "n_relation": kg.n_relation,
                      "relations": kg.relations, "n_triples": kg.n_triples,
                      "n_edges": int(kg.edge_index.shape[1]), "reverse": reverse})


def cooccurrence(train_sequences, entity2id_path, *, matrix, contributions, stats, top_n: int,
                 emotion_filter: bool = True) -> None:
    from ..cooccurrence import count_cooccurrence, save_counts

    n_entity = max(load_id_map(entity2id_path, "entity").values()) + 2  # as the KG: the last id pads
    result = count_cooccurrence(pq.read_table(train_sequences), n_entity, top_n=top_n, emotion_filter=emotion_filter)
    save_counts(matrix, contributions, result)
    nnz_rows = int((result.counts.getnnz(axis=1) > 0).sum())
    summary = {"n_entity": n_entity, "nnz": int(result.counts.nnz), "pairs": int(result.counts.sum()),
               "rows_with_pairs": nnz_rows, "top_n_labels": top_n, "emotion_filter": emotion_filter}
    write_json(stats, summary)
    log.info("co-occurrence: %s", summary)
