"""The items a short random walk on the KG reaches from an entity: the KG rows of the copy mixture.

For a local entity l, K_l is the distribution of where a random walk of one or two steps from l ends, kept
to the candidate items and renormalised: K_l ∝ (Â_l + (Â²)_l) restricted to items, Â the row-normalised KG
adjacency without self-loops. From a movie, the second step reaches the movies that share a genre, star,
director or writer with it (and the movie itself, which ReDial recommenders often name again); from a genre
or a person, the first step reaches their movies.

That is the structure the RGCN is meant to carry into h . E. On a few hundred training dialogues the learnt
table does not: on the real ReDial sample these rows alone rank the validation targets far above the
co-occurrence rows (README, 'The real sample'), so stage 2 can copy from them as it copies from the global
entities' co-occurrence rows (models.prompt.PromptEncoder.copy_scores).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..cooccurrence import row_normalise


class KGNeighbourhood:
    """K_l rows (len(ids) x n_entity, sparse, nonzero only at item columns) for any entity ids."""

    def __init__(self, edge_index, n_entity: int, item_ids):
        edges = np.asarray(edge_index, dtype=np.int64)
        src, dst = edges[0], edges[1]
        keep = src != dst  # self-loops would make every walk stay put
        adj = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (src[keep], dst[keep])),
                            shape=(n_entity, n_entity))
        adj.data[:] = 1.0  # parallel edges (two relations between the same pair) count once
        self.n_entity = n_entity
        self._step = row_normalise(adj)
        self._items = np.zeros(n_entity, dtype=np.float32)
        self._items[np.asarray(item_ids, dtype=np.int64)] = 1.0

    def rows(self, entity_ids) -> sp.csr_matrix:
        ids = np.asarray(entity_ids, dtype=np.int64)
        one = self._step[ids]
        walk = one + one @ self._step
        return row_normalise(walk @ sp.diags(self._items))
