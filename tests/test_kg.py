"""KG tensors: edges, reverse edges, padding, determinism, and that an RGCN consumes them."""

import numpy as np
import pytest
import torch

from ecrflow.errors import InputError
from ecrflow.kg import build_kg, load_kg_tensors, save_kg_tensors

E2I = {"<a>": 0, "<b>": 1, "<c>": 2}
R2I = {"<genre>": 0, "<starring>": 1, "self_loop": 2}
SUBKG = {"0": [[2, 0], [0, 1], [1, 2], [0, 1]], "1": [[2, 1]], "2": [[2, 2]]}


def _edges(kg):
    return {(int(s), int(d), int(r)) for s, d, r in zip(*kg.edge_index, kg.edge_type)}


def test_shared_reverse_edges_and_padding():
    kg = build_kg(E2I, R2I, SUBKG)
    assert kg.n_entity == 4 and kg.pad_entity == 3 and kg.n_relation == 3 and kg.n_triples == 6
    assert _edges(kg) == {
        (0, 0, 2), (1, 1, 2), (2, 2, 2),  # self loops (their reverse is themselves)
        (0, 1, 0), (1, 0, 0),  # genre and its reverse, duplicates removed
        (0, 2, 1), (2, 0, 1),  # starring and its reverse
        (3, 3, 2),  # the padding entity's self edge
    }
    assert kg.edge_index.shape == (2, 8) and kg.edge_index.dtype == np.int64
    # Sorted by (source, target, type): the same files always give the same tensors.
    order = np.lexsort((kg.edge_type, kg.edge_index[1], kg.edge_index[0]))
    assert (order == np.arange(8)).all()


def test_separate_reverse_relations():
    kg = build_kg(E2I, R2I, SUBKG, reverse="separate")
    assert kg.relations == ["<genre>", "<starring>", "self_loop", "<genre>~", "<starring>~"]
    assert (1, 0, 3) in _edges(kg) and (2, 0, 4) in _edges(kg) and (0, 0, 2) in _edges(kg)


@pytest.mark.parametrize("subkg, expected", [
    ({"0": [[0, 7]]}, "tail id 7 is not in entity2id"),
    ({"0": [[5, 1]]}, "relation id 5 is not in relation2id"),
    ({"x": [[0, 1]]}, "head key 'x' is not an entity id"),
    ({"0": [[0]]}, "is not [relation id, tail id]"),
])
def test_bad_kg_names_the_edge(subkg, expected):
    with pytest.raises(InputError) as err:
        build_kg(E2I, R2I, subkg, subkg_path="dbpedia_subkg.json")
    assert expected in str(err.value) and "dbpedia_subkg.json" in str(err.value)


def test_missing_self_loop_relation():
    with pytest.raises(InputError, match="self_loop"):
        build_kg(E2I, {"<genre>": 0}, {})


def test_tensors_round_trip_into_rgcn(tmp_path):
    from torch_geometric.nn import RGCNConv

    kg = build_kg(E2I, R2I, SUBKG)
    save_kg_tensors(tmp_path / "kg.safetensors", kg)
    edge_index, edge_type, meta = load_kg_tensors(tmp_path / "kg.safetensors")
    assert meta == {"n_entity": 4, "pad_entity": 3, "n_relation": 3}
    assert torch.equal(edge_index, torch.from_numpy(kg.edge_index))
    torch.manual_seed(0)
    conv = RGCNConv(8, 8, num_relations=meta["n_relation"], num_bases=2)
    x = torch.randn(meta["n_entity"], 8)
    out = conv(x, edge_index, edge_type)
    assert out.shape == (4, 8)
    # Entity 0 is connected (genre, starring); removing its edges changes its row and only rows it touches.
    keep = (edge_index[0] != 0) & (edge_index[1] != 0)
    out2 = conv(x, edge_index[:, keep], edge_type[keep])
    assert not torch.allclose(out[0], out2[0]) and torch.allclose(out[3], out2[3])


# -- the KG rows of the copy mixture: where a one- or two-step walk ends, among the items ----------------------
from ecrflow.kg.neighbourhood import KGNeighbourhood  # noqa: E402

# Movies 0, 1, 2 (the items), genre 3, actor 4, an isolated entity 5. Edges both ways, self loops everywhere.
_WALK_EDGES = [(0, 3), (1, 3), (0, 4), (2, 4)]


def _walk_kg():
    src = [s for s, d in _WALK_EDGES] + [d for s, d in _WALK_EDGES] + list(range(6))
    dst = [d for s, d in _WALK_EDGES] + [s for s, d in _WALK_EDGES] + list(range(6))
    return KGNeighbourhood(np.array([src, dst]), 6, item_ids=[0, 1, 2])


def test_kg_rows_are_the_items_a_one_or_two_step_walk_reaches_by_hand():
    rows = _walk_kg().rows([0, 3, 5]).toarray()
    # From movie 0: step 1 to the genre or the actor (1/2 each, not items); step 2 from the genre to 0 or 1,
    # from the actor to 0 or 2: items 0 1/2, 1 1/4, 2 1/4 (self loops ignored, or the walk would stay put).
    assert np.allclose(rows[0], [0.5, 0.25, 0.25, 0, 0, 0])
    # From the genre: step 1 reaches movies 0 and 1 (1/2 each); step 2 reaches only the genre and the actor.
    assert np.allclose(rows[1], [0.5, 0.5, 0, 0, 0, 0])
    assert rows[2].sum() == 0  # no edges: an empty row, which the copy mixture leaves out


def test_kg_rows_count_parallel_edges_once():
    ei = np.array([[0, 0, 3, 3, 1, 3], [3, 3, 0, 0, 3, 1]])  # 0-3 twice (two relations), 1-3 once
    assert np.allclose(KGNeighbourhood(ei, 4, item_ids=[0, 1]).rows([3]).toarray(), [[0.5, 0.5, 0, 0]])
