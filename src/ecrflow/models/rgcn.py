"""The RGCN layer of the prompt encoder, evaluated through its basis decomposition with sparse products.

The parameters are those of PyG's ``RGCNConv`` (basis decomposition, mean aggregation per relation, root
weight, bias), so the maths and the checkpoints are the same. The evaluation differs: ``RGCNConv`` (without
torch-sparse) aggregates neighbours once per relation and keeps every per-relation table for the backward
pass (25 relations x 30k entities x 384 floats: over 1 GB at ReDial scale, plus the gathered messages). With
W_r = sum_b a_rb V_b the layer is

    out = x W_root + bias + sum_b M_b V_b,   M_b = A_b x,   A_b = sum_r a_rb A_r,

where A_r is relation r's mean-normalised adjacency. ``BasisAggregate`` computes M (bases x nodes x d) with
one sparse product per basis and writes its own backward: the gradient of a_rb is <dL/dM_b, A_r x>,
recomputed one relation at a time, so only M and its gradient are ever held. ``tests/test_prompt.py`` checks
values and gradients against ``RGCNConv`` itself.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# torch warns once per process that sparse CSR support is "in beta"; the products used here (CSR x dense, forward
# and the hand-written backward) are checked against PyG's RGCNConv in tests/test_prompt.py, so the warning says
# nothing about this code and would only fill every training log.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def _crow(rows: torch.Tensor, n: int) -> torch.Tensor:
    """CSR row pointers of row-sorted coordinates."""
    out = torch.zeros(n + 1, dtype=torch.long)
    out[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return out


def _spmm(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int, dense: torch.Tensor) -> torch.Tensor:
    """Sparse (CSR, row-sorted) times dense; CSR products are about twice as fast as COO on CPU."""
    adj = torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)
    return adj @ dense


class _Aggregate(torch.autograd.Function):
    """M_b = A_b x for every basis b, returned as separate (N x d) tensors so that their gradients arrive
    separately too (no stacking, no zero-filled scatter of a B x N x d gradient)."""

    @staticmethod
    def forward(ctx, x, comp, graph: "BasisRGCN"):
        pair_values = graph.pair_values(comp)  # pairs x B
        outs = tuple(_spmm(graph.crow, graph.pairs[1], pair_values[:, b].contiguous(), graph.n_nodes, x)
                     for b in range(comp.shape[1]))
        ctx.save_for_backward(x, comp, pair_values)
        ctx.graph = graph
        return outs

    @staticmethod
    def backward(ctx, *grads):
        x, comp, pair_values = ctx.saved_tensors
        g: BasisRGCN = ctx.graph
        n_bases = comp.shape[1]
        grads = [gr if gr is not None else torch.zeros_like(x) for gr in grads]
        grad_x = grad_comp = None
        if ctx.needs_input_grad[0]:
            # dL/dx = sum_b A_b^T dL/dM_b
            t_values = pair_values[g.transpose_perm]
            grad_x = _spmm(g.crow_t, g.pairs_t[1], t_values[:, 0].contiguous(), g.n_nodes, grads[0].contiguous())
            for b in range(1, n_bases):
                grad_x += _spmm(g.crow_t, g.pairs_t[1], t_values[:, b].contiguous(), g.n_nodes,
                                grads[b].contiguous())
        if ctx.needs_input_grad[1]:
            # dL/da_rb = <dL/dM_b, A_r x>: A_r x for a group of relations at a time, written into one buffer
            # (bounded memory), then one matrix product per group against all bases.
            flat = torch.stack([gr.reshape(-1) for gr in grads], dim=1)  # (N*d) x B
            grad_comp = torch.zeros_like(comp)
            n_rel = comp.shape[0]
            group = max(1, min(n_rel, int(g.group_bytes // max(x.numel() * x.element_size(), 1))))
            buf = torch.empty((group,) + tuple(x.shape), dtype=x.dtype, device=x.device)
            for lo in range(0, n_rel, group):
                k = min(group, n_rel - lo)
                for j in range(k):
                    g.relation_product(lo + j, x, out=buf[j])
                grad_comp[lo:lo + k] = buf[:k].reshape(k, -1) @ flat
        return grad_x, grad_comp, None


class BasisRGCN(nn.Module):
    """The graph's sparse patterns as buffers; the parameters stay in the ``RGCNConv`` given to ``forward``."""

    def __init__(self, conv, edge_index: torch.Tensor, edge_type: torch.Tensor, n_nodes: int,
                 group_bytes: int = 256 << 20):
        super().__init__()
        self.group_bytes = group_bytes  # memory for per-relation products in the backward pass
        if conv.num_bases is None:
            raise ValueError("BasisRGCN needs an RGCNConv with num_bases")
        n_rel = conv.num_relations
        src, dst, rel = edge_index[0].long(), edge_index[1].long(), edge_type.long()
        # Mean aggregation per (target, relation): each edge weighs 1 / |N_r(target)| (messages flow from
        # edge_index[0] to edge_index[1], as PyG's default).
        _, inverse, counts = torch.unique(dst * n_rel + rel, return_inverse=True, return_counts=True)
        norm = 1.0 / counts[inverse].double()
        self.n_nodes = n_nodes
        # Per-basis matrices share one coalesced (target, source) pattern; parallel edges add up.
        pairs, pair_of_edge = torch.unique(dst * n_nodes + src, return_inverse=True)
        self.register_buffer("pairs", torch.stack([pairs // n_nodes, pairs % n_nodes]), persistent=False)
        self.register_buffer("pair_of_edge", pair_of_edge, persistent=False)
        self.register_buffer("edge_rel", rel, persistent=False)
        self.register_buffer("edge_norm", norm.float(), persistent=False)
        t_key = (pairs % n_nodes) * n_nodes + pairs // n_nodes
        perm = torch.argsort(t_key)
        self.register_buffer("transpose_perm", perm, persistent=False)
        self.register_buffer("pairs_t", torch.stack([t_key[perm] // n_nodes, t_key[perm] % n_nodes]), persistent=False)
        self.register_buffer("crow", _crow(self.pairs[0], n_nodes), persistent=False)
        self.register_buffer("crow_t", _crow(self.pairs_t[0], n_nodes), persistent=False)
        # Per-relation normalised adjacencies, coalesced, concatenated with offsets.
        key = rel * n_nodes * n_nodes + dst * n_nodes + src
        ukey, inv = torch.unique(key, return_inverse=True)
        vals = torch.zeros(len(ukey), dtype=torch.float64).index_add(0, inv, norm)
        urel = ukey // (n_nodes * n_nodes)
        within = ukey % (n_nodes * n_nodes)
        self.register_buffer("rel_index", torch.stack([within // n_nodes, within % n_nodes]), persistent=False)
        self.register_buffer("rel_norm", vals.float(), persistent=False)
        offsets = torch.zeros(n_rel + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.bincount(urel, minlength=n_rel), 0)
        self.register_buffer("rel_offsets", offsets, persistent=False)
        self.register_buffer("rel_crow", torch.stack([_crow(self.rel_index[0, offsets[r]:offsets[r + 1]], n_nodes)
                                                      for r in range(n_rel)]), persistent=False)

    def relation_product(self, r: int, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """A_r x (relation r's mean aggregation of x), written into ``out``."""
        lo, hi = int(self.rel_offsets[r]), int(self.rel_offsets[r + 1])
        adj = torch.sparse_csr_tensor(self.rel_crow[r], self.rel_index[1, lo:hi], self.rel_norm[lo:hi],
                                      (self.n_nodes, self.n_nodes), check_invariants=False)
        return torch.mm(adj, x, out=out)

    def pair_values(self, comp: torch.Tensor) -> torch.Tensor:
        """A_b's values on the shared pattern: sum over the pair's edges of a_{rel,b} / |N_rel(target)|."""
        coef = comp[self.edge_rel] * self.edge_norm[:, None]
        out = torch.zeros(self.pairs.shape[1], comp.shape[1], dtype=coef.dtype, device=coef.device)
        return out.index_add(0, self.pair_of_edge, coef)

    def forward(self, conv, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # sparse products in fp32
            m = _Aggregate.apply(x.float(), conv.comp.float(), self)  # B tensors of N x d
        # The dense products may run under autocast (bf16).
        out = x @ conv.root
        for b, m_b in enumerate(m):
            out = out + m_b @ conv.weight[b]
        if conv.bias is not None:
            out = out + conv.bias
        return out
