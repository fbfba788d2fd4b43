"""Soft identifiers trained end to end (UniGRec-style) on the parallel-digit model `tiger-set`.

Each item keeps its continuous product-quantisation sub-vectors z_j (from `PQKMeans` on the item vectors), and
its digit j is a distribution over codewords, q_j = softmax(-|z_j - c|^2 / (tau * s_j)) (s_j: the digit's mean
quantisation error, so tau is scale-free). The codebooks are parameters trained jointly with the recommender
on the recommendation loss: the history items enter as the q-weighted sum of digit embeddings, and every
next item's digits are soft targets (cross-entropy against q). Two further terms:

- annealed inference alignment: tau decays geometrically from `tau_start` to `tau_end` over the first
  `anneal_fraction` of training (steps or the time budget); then the codes are frozen to hard codes
  (nearest codeword, collisions reassigned in the last digit) and training continues on exactly the codes
  that inference scores, so training and decoding agree;
- codeword uniformity: `uniformity` x mean over digits of KL(mean assignment in the batch || uniform), against
  codebook collapse.

- dual collaborative distillation (`distill_weight` > 0, a trained SASRec-family teacher): while the codes are
  soft, each batch item's soft code vector (the tokenizer side) is pulled toward the teacher's item vector, and
  the user state at every position (the recommender side) toward the teacher's state at the same cell, each
  through a linear projection and an in-batch InfoNCE (semrec.models.teacher). The codebooks thus learn where
  a strong ID model puts each item; after hardening only the recommendation loss is left.

At tau -> 0, q is one-hot on the hard code and the loss equals `tiger-set`'s loss on those codes (pinned by
tests).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.models.base import Recommender, register
from semrec.models.layers import info_nce
from semrec.models.teacher import load_teacher, teacher_items, teacher_states
from semrec.models.tiger_set import TigerSet, TigerSetConfig, TigerSetNet
from semrec.semantic_ids.collisions import resolve


@dataclass
class TigerSoftConfig(TigerSetConfig):
    """`tiger-set` options plus the soft-identifier schedule (UniGRec: soft -> hard, uniformity term)."""

    vectors_path: str | None = None  # (n_items, dim) .npy item vectors (row = item_idx) to quantise
    n_digits: int = 32
    codebook_size: int = 256
    tau_start: float = 1.0
    tau_end: float = 0.05
    anneal_fraction: float = 0.5  # share of training spent soft; hard codes after it
    uniformity: float = 0.1
    teacher_path: str | None = None  # saved sasrec / sasrec-align model: the collaborative teacher
    distill_weight: float = 0.0  # dual collaborative distillation (item codes and user states) while soft
    distill_temperature: float = 0.07

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.tau_end <= self.tau_start) or not 0 <= self.anneal_fraction <= 1 or self.uniformity < 0:
            raise ConfigError("tiger-soft: need 0 < tau_end <= tau_start, anneal_fraction in [0, 1], uniformity >= 0")
        if self.distill_weight < 0 or self.distill_temperature <= 0:
            raise ConfigError("tiger-soft: distill_weight must be >= 0 and distill_temperature > 0")


class TigerSoftNet(TigerSetNet):
    """`TigerSetNet` + item sub-vectors (buffer), trainable codebooks, and a soft/hard switch."""

    def __init__(self, cfg: TigerSoftConfig, n_items: int, z: torch.Tensor, books: torch.Tensor, d_teacher: int = 0):
        super().__init__(cfg, books.shape[0], books.shape[1], n_items)
        self.register_buffer("z", z.clone())  # (n_items, m, sub)
        # codebooks = PQ init + a learned offset in units of the digit's codeword spread: Adam's steps of ~lr and
        # the loop's weight decay then act on the offset (decay pulls back to the init, not to 0, which
        # collapsed the codes onto a few codewords in a Beauty run)
        self.register_buffer("books0", books.clone())
        self.register_buffer("spread", books.std(dim=(1, 2), keepdim=True).clamp(min=1e-6) * 0.1)
        self.delta = nn.Parameter(torch.zeros_like(books))
        err = torch.stack([torch.cdist(z[:, j], books[j]).min(1).values.pow(2).mean() for j in range(len(books))])
        self.register_buffer("scale", err.clamp(min=1e-6))  # (m,) mean quantisation error per digit
        self.register_buffer("hard", torch.zeros((), dtype=torch.bool))
        self.tau = cfg.tau_start
        self.uniformity = cfg.uniformity
        d = self.emb.weight.shape[1]
        self.to_teacher_item = nn.Linear(d, d_teacher) if d_teacher else None
        self.to_teacher_user = nn.Linear(d, d_teacher) if d_teacher else None
        self.distill_weight, self.distill_temperature = cfg.distill_weight, cfg.distill_temperature
        self.teacher: tuple[torch.Tensor, torch.Tensor] | None = None  # this batch's (item table, states), set per step

    @property
    def books(self) -> torch.Tensor:
        """(m, K, sub) current codebooks."""
        return self.books0 + self.spread * self.delta

    def assign_logits(self, items: torch.Tensor) -> torch.Tensor:
        """(U,) items -> (U, m, K) logits of the soft assignment at the current temperature."""
        z = self.z[items]  # (U, m, sub); |z - c|^2 expanded, so no (U, m, K, sub) temporary
        d = z.pow(2).sum(-1, keepdim=True) - 2 * torch.einsum("ums,mks->umk", z, self.books) + self.books.pow(2).sum(-1)
        return -d.clamp(min=0) / (self.tau * self.scale[None, :, None])

    @torch.no_grad()
    def hard_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Nearest codeword of every item per digit (n_items, m), and distances to the last digit's codewords."""
        d_last = (self.z[:, -1, None] - self.books[-1][None]).pow(2).sum(-1)
        codes = torch.stack([torch.cdist(self.z[:, j], self.books[j]).argmin(1) for j in range(self.m)], 1)
        return codes.cpu().numpy(), d_last.cpu().numpy()

    def forward(self, codes: torch.Tensor, items: torch.Tensor, catalogue: torch.Tensor | None = None) -> torch.Tensor:
        if bool(self.hard):
            return super().forward(codes, items, catalogue)
        b, t = items.shape
        valid = items >= 0
        uniq, inv = torch.unique(items[valid], return_inverse=True)
        q = F.softmax(self.assign_logits(uniq), -1)  # (U, m, K)
        table = self.emb.weight[1:].view(self.m, self.k, -1)
        xu = torch.einsum("umk,mkd->ud", q, table) * self.m ** -0.5
        x = xu.new_zeros(b, t, xu.shape[-1]).index_put((valid.nonzero(as_tuple=True)), xu[inv])
        if self.item_emb is not None:
            x = x + self.item_emb(torch.where(valid & (items < self.item_emb.num_embeddings - 1), items + 1, 0))
        pos = torch.arange(t - 1, device=items.device).expand(b, t - 1)
        h = self.states(codes[:, :-1], items[:, :-1], pos, None, x=x[:, :-1])
        has = valid[:, 1:]
        logp = F.log_softmax(self.digit_logits(self.drop(h[has])), -1)  # (N, m, K)
        q_next = q[inv.new_zeros(b, t).index_put(valid.nonzero(as_tuple=True), inv)[:, 1:][has]]
        loss = -(q_next * logp).sum(-1).mean()
        if self.uniformity > 0:
            usage = q.mean(0)  # (m, K)
            loss = loss + self.uniformity * (math.log(self.k) + (usage * usage.clamp(min=1e-12).log()).sum(-1)).mean()
        if self.teacher is not None:  # tokenizer side (distinct items) and recommender side (every position)
            items_t, states_t = self.teacher
            tau = self.distill_temperature
            loss = loss + self.distill_weight * (info_nce(self.to_teacher_item(xu), items_t[uniq], tau)
                                                 + info_nce(self.to_teacher_user(h[has]), states_t[has], tau))
        return loss


@register
class TigerSoft(TigerSet):
    """Parallel-digit generative retrieval with soft identifiers learned end to end, annealed to hard codes."""

    name = "tiger-soft"
    Config = TigerSoftConfig

    def __init__(self, n_items: int, config: TigerSoftConfig | None = None, vectors: np.ndarray | None = None,
                 teacher: Recommender | None = None, **overrides: Any):
        from semrec.semantic_ids.pq_kmeans import PQKMeans

        cfg = config if config is not None else TigerSoftConfig()
        super().__init__(n_items, cfg, codes=None, **overrides)
        cfg = self.config
        if vectors is None and cfg.vectors_path:
            vectors = np.load(cfg.vectors_path, allow_pickle=False)
        self._z = self._books = None
        if vectors is not None:
            if len(vectors) != n_items:
                raise ConfigError(f"tiger-soft: {len(vectors)} item vectors for {n_items} items (rows = item_idx)")
            tok = PQKMeans(n_levels=cfg.n_digits, codebook_size=cfg.codebook_size, seed=cfg.train.seed).fit(vectors)
            self.codes, self.codebook = tok.codes, cfg.codebook_size
            with torch.no_grad():
                self._z = tok._prep(tok._tensor(vectors)).cpu()
            self._books = tok.codebooks.cpu()
        self.active = np.ones(n_items, dtype=bool)
        self.teacher, self._d_teacher = teacher, None

    def build_module(self) -> nn.Module:
        if self._z is None:
            raise ConfigError("tiger-soft needs item vectors: pass vectors=... or set vectors_path")
        if self._d_teacher is None:  # a loaded model has it from its extra state, and needs no teacher
            if self.config.distill_weight:
                self.teacher = load_teacher(self.teacher, self.config.teacher_path, self.n_items, self.name)
            self._d_teacher = int(self.teacher.config.hidden) if self.config.distill_weight else 0
        return TigerSoftNet(self.config, self.n_items, self._z, self._books, self._d_teacher)

    def fit(self, train: Sequences, valid=None) -> "TigerSoft":
        if self.module is not None and self.config.distill_weight:  # a loaded model: its teacher is not saved
            self.teacher = load_teacher(self.teacher, self.config.teacher_path, self.n_items, self.name)
        self._t0, self._step, self._codes_version = time.perf_counter(), 0, -1
        super().fit(train, valid)
        self.harden()  # whatever the best epoch was, inference uses hard codes from its codebooks
        return self

    def progress(self) -> float:
        tc = self.train_config
        done = self._step / max(1, tc.epochs * self.num_batches(None, tc.batch_size))
        if self.train_config.max_train_seconds:
            done = max(done, (time.perf_counter() - self._t0) / self.train_config.max_train_seconds)
        return min(1.0, done)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        net, cfg = self.module, self.config
        self._step += 1
        if not bool(net.hard):
            frac = self.progress() / cfg.anneal_fraction if cfg.anneal_fraction > 0 else 1.0
            if frac >= 1.0:
                self.harden()
            else:
                net.tau = cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac
        with self.distilling(batch["items"]):
            return super().loss(batch)

    @contextlib.contextmanager
    def distilling(self, items: torch.Tensor) -> Iterator[None]:
        """While the codes are soft and a teacher is set: the network's loss on these windows includes the dual
        collaborative distillation (the teacher's item table and its states at the windows' cells)."""
        net = self.module
        if self.config.distill_weight and not bool(net.hard):
            net.teacher = (teacher_items(self.teacher).to(items.device), teacher_states(self.teacher, items[:, :-1]))
        try:
            yield
        finally:
            net.teacher = None

    def harden(self) -> None:
        """Freeze the codes: nearest codewords of the current codebooks, collisions moved in the last digit."""
        net = self.module
        if not bool(net.hard):
            self.refresh_codes()
            net.hard.fill_(True)
            net.delta.requires_grad_(False)

    def refresh_codes(self, strict: bool = True) -> None:
        """Hard codes of the current codebooks; `strict=False` (validation while soft) keeps colliding codes
        instead of failing when the last digit cannot separate them."""
        raw, last = self.module.hard_codes()
        try:
            self.codes = resolve(raw, "reassign", last)
        except ConfigError as e:
            if strict:
                raise ConfigError(f"tiger-soft: the trained codebooks put too many items on one code ({e}); "
                                  "fix: raise uniformity or lower train.lr") from None
            self.codes = raw
        self._tokens = self._codes_t = None

    def score(self, histories: Sequences) -> torch.Tensor:
        step = getattr(self, "_step", 0)
        if self.module is not None and not bool(self.module.hard) and getattr(self, "_codes_version", -1) != step:
            self.refresh_codes(strict=False)  # validation during the soft phase scores the current hard codes
            self._codes_version = step
        return super().score(histories)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if not bool(self.module.hard):
            self.refresh_codes()

    def extra_state(self) -> dict[str, Any]:
        return super().extra_state() | {"sub_dim": int(self.module.z.shape[-1]), "d_teacher": self._d_teacher}

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> "TigerSoft":
        config.vectors_path = None  # vectors, codebooks and codes come from model.safetensors
        trained = int(extra.get("n_items_trained", n_items))
        m, k, sub = int(extra["n_digits"]), int(extra["codebook"]), int(extra["sub_dim"])
        model = cls(trained, config)
        model.codes, model.codebook = np.zeros((trained, m), np.int64), k
        model._z, model._books = torch.zeros(trained, m, sub), torch.ones(m, k, sub)  # overwritten by the state
        model._d_teacher = int(extra.get("d_teacher") or 0)
        model.build(device)
        return model
