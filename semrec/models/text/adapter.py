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
        self.d_in, self.d_out, self.n_experts, self.dropout = d_in, d_out, n_experts, dropout
        self.bias = nn.Parameter(torch.zeros(n_experts, d_in))  # per-expert centring (the "whitening" shift)
        self.proj = nn.Parameter(torch.empty(d_in, n_experts * d_out))  # all experts in one matmul
        self.gate = nn.Linear(d_in, n_experts, bias=False)
        nn.init.normal_(self.proj, std=0.02)
        nn.init.zeros_(self.gate.weight)  # uniform mixture at the start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Dropout on x (keep with probability 1 - p; a torch.rand mask, ~2x cheaper than bernoulli_ on CPU), but
        # its 1/(1-p) goes on the (d_in x ...) weights rather than on the (N x d_in) input: one pass less over the
        # whole catalogue at every training step.
        scale = 1.0
        if self.training and self.dropout:
            x = x * torch.rand_like(x).ge_(self.dropout)
            scale = 1.0 / (1.0 - self.dropout)
        experts = (x @ (self.proj * scale)).view(-1, self.n_experts, self.d_out)  # x W_k for every expert at once
        gates = torch.softmax(x @ (self.gate.weight.T * scale), dim=-1)
        # sum_k g_k (x - b_k) W_k = sum_k g_k x W_k - g (b W): the shift is an (N x n_experts) product, so the
        # (N x n_experts x d_out) expert outputs are not passed over a second time (nor in the backward pass)
        shift = torch.einsum("ki,ikd->kd", self.bias, self.proj.view(self.d_in, self.n_experts, self.d_out))
        return (gates.unsqueeze(-1) * experts).sum(1) - gates @ shift


__all__ = ["MoEAdapter"]
