"""The DBpedia sub-graph as tensors for an RGCN, the entity/relation id maps, and the item (movie) ids.

Inputs (ECR_SPEC 1.2): ``entity2id.json`` (URI -> id), ``relation2id.json`` (URI -> id, with ``self_loop``),
``dbpedia_subkg.json`` ({head id as string: [[relation id, tail id], ...]}).

The edge list follows UniCRS: every triple (h, r, t) gives the edges h->t and t->h; by default both carry
relation r (``reverse: shared``), ``reverse: separate`` gives reverse edges relations of their own. The padding
entity (id max+1) gets one self edge so that its row is defined. Edges are de-duplicated and sorted, so the
same files always give the same tensors (the reference enumerates a Python set).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import SELF_LOOP
from ..errors import InputError
from ..io import read_json


def load_id_map(path, what: str) -> dict[str, int]:
    """An ``{name: int id}`` JSON map with unique non-negative ids."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise InputError(path, f"expected a non-empty JSON object mapping each {what} to an integer id")
    seen: dict[int, str] = {}
    for key, idx in data.items():
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise InputError(path, f"{what} {key!r} has id {idx!r}; expected a non-negative integer")
        if idx in seen:
            raise InputError(path, f"{what}s {seen[idx]!r} and {key!r} share id {idx}; ids must be unique")
        seen[idx] = key
    return data


@dataclass
class KnowledgeGraph:
    edge_index: np.ndarray  # (2, E) int64: source, target
    edge_type: np.ndarray  # (E,) int64
    n_entity: int  # max entity id + 2 (the last id pads)
    pad_entity: int
    relations: list[str]  # relation name by id (reverse relations appended with "~")
    n_triples: int

    @property
    def n_relation(self) -> int:
        return len(self.relations)


def build_kg(entity2id: dict[str, int], relation2id: dict[str, int], subkg: dict, *, reverse: str = "shared",
             subkg_path: str | Path = "dbpedia_subkg.json",
             relation2id_path: str | Path = "relation2id.json") -> KnowledgeGraph:
    if SELF_LOOP not in relation2id:
        raise InputError(relation2id_path, f"no {SELF_LOOP!r} relation; the UniCRS KG files list it last",
                         field=SELF_LOOP, hint=f'add "{SELF_LOOP}": <next id> (the KG gives every entity a self loop)')
    n_rel = max(relation2id.values()) + 1
    if sorted(relation2id.values()) != list(range(n_rel)):
        raise InputError(relation2id_path, "relation ids must be 0..n-1 without gaps")
    max_ent = max(entity2id.values())
    pad = max_ent + 1
    if not isinstance(subkg, dict):
        raise InputError(subkg_path, "expected a JSON object {head id: [[relation id, tail id], ...]}")

    heads, tails, rels = [], [], []
    for head, edges in subkg.items():
        try:
            h = int(head)
        except ValueError:
            raise InputError(subkg_path, f"head key {head!r} is not an entity id") from None
        if not 0 <= h <= max_ent or not isinstance(edges, list):
            raise InputError(subkg_path, f"head {head!r}: expected an entity id in 0..{max_ent} with a list of "
                             f"[relation id, tail id] pairs")
        for edge in edges:
            if (not isinstance(edge, list) or len(edge) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in edge)):
                raise InputError(subkg_path, f"head {head}: edge {edge!r} is not [relation id, tail id]")
            r, t = edge
            if not 0 <= r < n_rel:
                raise InputError(subkg_path, f"head {head}: relation id {r} is not in relation2id (0..{n_rel - 1})")
            if not 0 <= t <= max_ent:
                raise InputError(subkg_path, f"head {head}: tail id {t} is not in entity2id (0..{max_ent})")
            heads.append(h)
            tails.append(t)
            rels.append(r)
    h = np.asarray(heads, dtype=np.int64)
    t = np.asarray(tails, dtype=np.int64)
    r = np.asarray(rels, dtype=np.int64)
    names = [name for name, _ in sorted(relation2id.items(), key=lambda kv: kv[1])]
    if reverse == "shared":
        r_rev = r
    elif reverse == "separate":
        # Self loops are their own reverse; every other relation gets an inverse id after the originals.
        self_id = relation2id[SELF_LOOP]
        inverse = [i for i in range(n_rel) if i != self_id]
        inv_id = {rel: n_rel + k for k, rel in enumerate(inverse)}
        r_rev = np.array([self_id if x == self_id else inv_id[x] for x in r], dtype=np.int64)
        names += [names[i] + "~" for i in inverse]
    else:
        raise ValueError(f"kg.reverse must be 'shared' or 'separate', got {reverse!r}")
    src = np.concatenate([h, t, [pad]])
    dst = np.concatenate([t, h, [pad]])
    typ = np.concatenate([r, r_rev, [relation2id[SELF_LOOP]]])
    triples = np.unique(np.stack([src, dst, typ], axis=1), axis=0)  # de-duplicated and sorted
    return KnowledgeGraph(
        edge_index=np.ascontiguousarray(triples[:, :2].T),
        edge_type=np.ascontiguousarray(triples[:, 2]),
        n_entity=pad + 1,
        pad_entity=pad,
        relations=names,
        n_triples=len(heads),
    )


def load_kg(entity2id_path, relation2id_path, subkg_path, *, reverse: str = "shared"
            ) -> tuple[KnowledgeGraph, dict[str, int], dict[str, int]]:
    entity2id = load_id_map(entity2id_path, "entity")
    relation2id = load_id_map(relation2id_path, "relation")
    kg = build_kg(entity2id, relation2id, read_json(subkg_path), reverse=reverse, subkg_path=subkg_path,
                  relation2id_path=relation2id_path)
    return kg, entity2id, relation2id


def save_kg_tensors(path, kg: KnowledgeGraph) -> None:
    """edge_index (2, E) and edge_type (E,) as int64 safetensors, loadable with safetensors.torch."""
    from safetensors.numpy import save_file

    from ..io import atomic_path

    with atomic_path(path) as tmp:
        save_file({"edge_index": kg.edge_index, "edge_type": kg.edge_type}, str(tmp),
                  metadata={"n_entity": str(kg.n_entity), "pad_entity": str(kg.pad_entity),
                            "n_relation": str(kg.n_relation)})


def load_kg_tensors(path):
    """(edge_index, edge_type, metadata) as torch tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = {k: int(v) for k, v in f.metadata().items()}
        return f.get_tensor("edge_index"), f.get_tensor("edge_type"), meta
