"""RQ-VAE as in TIGER (Rajput et al. 2023): MLP encoder -> L residual codebooks -> MLP decoder.

Loss = reconstruction MSE + sum over levels of codebook + beta * commitment terms, with the
straight-through estimator carrying gradients past the argmin. Codebooks are k-means-initialised on the
first latents and dead codes (unused for an epoch) are restarted at random residuals, the two standard
cures for codebook collapse. Two optional terms:
- CF alignment (LETTER / PRORec): in-batch InfoNCE pulling each item's quantised latent toward a
  projection of its collaborative vector, so codes carry interaction signal, not only text.
- codeword uniformity (UniGRec-style): log-mean-exp of -2 x squared distances between normalised
  codewords of a level (Wang & Isola 2020), pushing codewords apart against collapse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import trange

from semrec.semantic_ids.kmeans import kmeans, sq_distances
from semrec.semantic_ids.tokenizer import Tokenizer, register


@dataclass
class RQVAEConfig:
    n_levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    dropout: float = 0.0
    beta: float = 0.25  # commitment weight
    cf_weight: float = 0.0  # CF-alignment InfoNCE weight (needs cf_vectors in fit)
    cf_temperature: float = 0.1
    uniformity_weight: float = 0.0  # codeword-uniformity weight
    epochs: int = 300
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    kmeans_init: bool = True
    restart_dead: bool = True
    normalize: bool = False  # L2-normalise inputs first
    collisions: str = "append"
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class RQVAEModule(nn.Module):
    def __init__(self, in_dim: int, cfg: RQVAEConfig, cf_dim: int = 0):
        super().__init__()
        self.encoder = mlp([in_dim, *cfg.hidden, cfg.latent_dim], cfg.dropout)
        self.decoder = mlp([cfg.latent_dim, *reversed(cfg.hidden), in_dim], cfg.dropout)
        self.codebooks = nn.Parameter(torch.randn(cfg.n_levels, cfg.codebook_size, cfg.latent_dim) * 0.1)
        self.cf_proj = nn.Linear(cf_dim, cfg.latent_dim) if cf_dim else None

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Codes (n, L), quantised latent (n, d), and the residual entering each level."""
        residual, zq, codes, residuals = z, torch.zeros_like(z), [], []
        for book in self.codebooks:
            residuals.append(residual)
            idx = sq_distances(residual, book).argmin(1)
            e = book[idx]
            codes.append(idx)
            zq = zq + e
            residual = residual - e.detach()  # each level's codebook term sees only its own codewords
        return torch.stack(codes, 1), zq, residuals

    def forward(self, x: torch.Tensor, beta: float):
        z = self.encoder(x)
        codes, zq, residuals = self.quantize(z)
        # per level: codebook term pulls codewords to the (frozen) residual, commitment the reverse.
        # Squared errors are summed over dimensions (as in TIGER's reference code), not averaged: with
        # unit-norm text vectors a per-dimension mean makes reconstruction ~400x weaker than the VQ terms,
        # and the encoder then collapses latents onto a few codewords.
        vq = sum(sq_err(self.codebooks[l][codes[:, l]], r.detach()) + beta * sq_err(r, self.codebooks[l][codes[:, l]].detach())
                 for l, r in enumerate(residuals))
        zq_st = z + (zq - z).detach()  # straight-through
        recon = sq_err(self.decoder(zq_st), x)
        return recon, vq, codes, zq_st, residuals


def sq_err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the last dimension, averaged over rows."""
    return (a - b).pow(2).sum(-1).mean()


def uniformity(book: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log mean exp(-t ||c_i - c_j||^2) over distinct normalised codewords; lower is more uniform."""
    c = F.normalize(book, dim=-1)
    d = sq_distances(c, c)
    k = len(c)
    off = ~torch.eye(k, dtype=torch.bool, device=c.device)
    return torch.logsumexp(-t * d[off], 0) - np.log(k * (k - 1))


@register
class RQVAE(Tokenizer):
    name = "rq-vae"
    Config = RQVAEConfig

    def __init__(self, config: RQVAEConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.module: RQVAEModule | None = None
        self.history: list[dict[str, float]] = []

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.n_levels

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.config.normalize else x

    @torch.no_grad()
    def _kmeans_init(self, x: torch.Tensor) -> None:
        """Codebook l := k-means centroids of the level-l residuals of the initial latents."""
        cfg = self.config
        residual = self.module.encoder(x[torch.randperm(len(x))[:max(cfg.codebook_size * 64, 4096)]])
        for l in range(cfg.n_levels):
            c, a = kmeans(residual, cfg.codebook_size, n_iter=10, seed=cfg.seed + l)
            self.module.codebooks.data[l] = c
            residual = residual - c[a]

    @torch.no_grad()
    def restart_dead_codes(self, usage: torch.Tensor, residuals: list[torch.Tensor]) -> list[int]:
        """Move each codeword unused this epoch (usage[l, k] == 0) onto a random residual of its level."""
        restarted = []
        for l, r in enumerate(residuals):
            dead = torch.nonzero(usage[l] == 0).flatten()
            if len(dead):
                pick = torch.randint(len(r), (len(dead),), device=r.device)
                self.module.codebooks.data[l, dead] = r[pick] + 1e-3 * torch.randn_like(r[pick])
            restarted.append(int(len(dead)))
        return restarted

    def _fit(self, x: torch.Tensor, cf: torch.Tensor | None) -> None:
        cfg = self.config
        x = self._prep(x)
        n = len(x)
        use_cf = cf is not None and cfg.cf_weight > 0
        self.module = RQVAEModule(x.shape[1], cfg, cf.shape[1] if use_cf else 0).to(cfg.device)
        if cfg.kmeans_init:
            self._kmeans_init(x)
        opt = torch.optim.AdamW(self.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        g = torch.Generator().manual_seed(cfg.seed)
        cf_n = F.normalize(cf, dim=-1) if use_cf else None
        total_restarts = [0] * cfg.n_levels
        bar = trange(cfg.epochs, desc="rq-vae", disable=not cfg.progress)
        for epoch in bar:
            self.module.train()
            usage = torch.zeros(cfg.n_levels, cfg.codebook_size, device=x.device)
            sums = {"recon": 0.0, "vq": 0.0, "cf": 0.0, "unif": 0.0}
            perm = torch.randperm(n, generator=g).to(x.device)
            for s in range(0, n, cfg.batch_size):
                idx = perm[s:s + cfg.batch_size]
                recon, vq, codes, zq_st, residuals = self.module(x[idx], cfg.beta)
                loss = recon + vq
                if use_cf:
                    h = F.normalize(self.module.cf_proj(cf_n[idx]), dim=-1)
                    # on the straight-through latent (as LETTER): the gradient reaches the encoder, so
                    # items move between codes; on the codewords alone the assignment would never change
                    logits = F.normalize(zq_st, dim=-1) @ h.T / cfg.cf_temperature
                    lab = torch.arange(len(idx), device=x.device)
                    cf_loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
                    loss = loss + cfg.cf_weight * cf_loss
                    sums["cf"] += cf_loss.item()
                if cfg.uniformity_weight > 0:
                    unif = sum(uniformity(b) for b in self.module.codebooks) / cfg.n_levels
                    loss = loss + cfg.uniformity_weight * unif
                    sums["unif"] += unif.item()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                usage += F.one_hot(codes, cfg.codebook_size).sum(0).to(usage.dtype)
                if s == 0:  # restart pool: residuals of the epoch's first (full-size) batch
                    pool = [r.detach() for r in residuals]
                sums["recon"] += recon.item()
                sums["vq"] += vq.item()
            if cfg.restart_dead and epoch < cfg.epochs - 1:
                total_restarts = [a + b for a, b in zip(total_restarts,
                                                         self.restart_dead_codes(usage, pool))]
            steps = -(-n // cfg.batch_size)
            self.history.append({k: v / steps for k, v in sums.items()} | {
                "used_level1": int((usage[0] > 0).sum())})
            bar.set_postfix(recon=f"{self.history[-1]['recon']:.4f}", used=self.history[-1]["used_level1"])
        self.module.eval()
        self.fit_stats.update(dead_code_restarts=total_restarts, final_losses=self.history[-1] if self.history else {})
        return None

    def _quantize(self, x: torch.Tensor, need_last: bool) -> tuple[np.ndarray, np.ndarray | None]:
        self.module.eval()
        z = self.module.encoder(self._prep(x))
        codes, _, residuals = self.module.quantize(z)
        last = sq_distances(residuals[-1], self.module.codebooks[-1]).cpu().numpy() if need_last else None
        return codes.cpu().numpy(), last

    @torch.no_grad()
    def latents(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoder output and its quantised version for each vector."""
        z = self.module.encoder(self._prep(self._tensor(vectors)))
        _, zq, _ = self.module.quantize(z)
        return z.cpu().numpy(), zq.cpu().numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = dict(self.module.state_dict())
        state["_in_dim"] = torch.tensor(self.module.encoder[0].in_features)
        state["_cf_dim"] = torch.tensor(self.module.cf_proj.in_features if self.module.cf_proj is not None else 0)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        in_dim, cf_dim = int(state.pop("_in_dim")), int(state.pop("_cf_dim"))
        self.module = RQVAEModule(in_dim, self.config, cf_dim).to(self.config.device)
        self.module.load_state_dict(state)
        self.module.eval()
