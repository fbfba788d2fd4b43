"""UniSRec's item adapter: parametric whitening followed by a mixture of experts (Hou et al., KDD 2022).

A frozen text vector x (e.g. 384-d MiniLM) becomes a recommender-sized item vector
`sum_k g_k(x) * (x - b_k) W_k` with `g = softmax(x G)`: each expert whitens the text space its own way and the
gate mixes them per item. The adapter is the only part that sees raw text vectors, so transferring it (and the
sequence model above it) to a new catalogue needs nothing but that catalogue's text.
"""

from __future__ import annotations

import torch
from torch import nn


class MoEAdapter(nn.Module):
    """(N, d_in) text vectors -> (N, d_out) item vectors; `n_experts` whitening projections mixed by a gate."""

    def __init__(self, d_in: int, d_out: int, n_experts: int = 8, dropout: float = 0.2):
        super().__init__()
        self.d_in, self.d_out, self.n_experts = d_in, d_out, n_experts
        self.bias = nn.Parameter(torch.zeros(n_experts, d_in))  # per-expert centring (the "whitening" shift)
        self.proj = nn.Parameter(torch.empty(d_in, n_experts * d_out))  # all experts in one matmul
        self.gate = nn.Linear(d_in, n_experts, bias=False)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.proj, std=0.02)
        nn.init.zeros_(self.gate.weight)  # uniform mixture at the start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        w = self.proj.view(self.d_in, self.n_experts, self.d_out)
        # (x - b_k) W_k = x W_k - b_k W_k, so the N x d_in input is multiplied once for all experts
        experts = (x @ self.proj).view(-1, self.n_experts, self.d_out) - torch.einsum("ki,ikd->kd", self.bias, w)
        gates = torch.softmax(self.gate(x), dim=-1)
        return (gates.unsqueeze(-1) * experts).sum(1)


__all__ = ["MoEAdapter"]
