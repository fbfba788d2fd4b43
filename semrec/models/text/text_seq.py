"""text-seq: a sequential recommender whose items are their text (UniSRec / Recformer line).

Every item enters as its cached text vector passed through a learned adapter (parametric whitening + mixture
of experts), optionally plus an ID embedding (`item_repr=text|id|text+id`), into a causal Transformer. The
next item is scored against the adapted vectors of ALL catalogue items (full softmax, cosine / temperature as
in UniSRec), so an item nobody has clicked is scored from its text alone, and `add_items` makes new items
recommendable without retraining. Optional: an in-batch sequence-item contrastive term, an M2TRec-style
next-category loss, `loss=in-batch` for large multi-catalogue pretraining, `trainable=adapter` for transfer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.models.base import TorchRecommender, register
from semrec.models.layers import (
    Dropout,
    PAD,
    Block,
    attention_mask,
    check_items,
    epoch_rows,
    init_weights,
    next_item_pairs,
    padded_tokens,
    positions,
    sample_negatives,
)
from semrec.models.text.adapter import MoEAdapter
from semrec.models.text.item_vectors import ItemTextSource, category_labels, load_item_texts
from semrec.models.text.tuned_encoder import pick_tune_items
from semrec.training.config import TrainConfig

ITEM_REPRS = ("text", "id", "text+id")
TEXT_LOSSES = ("ce", "in-batch")


@dataclass
class TextSeqConfig(ItemTextSource):
    """Sizes of SASRec as benchmarked here (d=64, 2 blocks, max length 50); adapter and temperature as in UniSRec
    (8 experts, adapter dropout 0.2, cosine / 0.07). Item text: `ItemTextSource`'s fields."""

    item_repr: str = "text+id"  # text | id | text+id
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.3
    activation: str = "gelu"  # gelu: 4x-wide feed-forward; relu: SASRec's block (feed-forward as wide as hidden)
    inner: int | None = None  # feed-forward width; None: 4 x hidden for gelu, hidden for relu
    n_experts: int = 8
    adapter_dropout: float = 0.2
    id_dropout: float = 0.0  # text+id: share of items whose ID vector is hidden per training step, so text alone
    #                          must carry them too
    unseen_id: str = "nearest"  # text+id, items never seen in training: the ID vector of the seen item nearest in
    #                             text (nearest) or none; their own ID rows were never trained
    unseen_negatives: bool = False  # True: items never seen in training are negatives of the training softmax too
    temperature: float = 0.07  # logits = cos(user, item) / temperature; 0 = plain dot product
    loss: str = "ce"  # ce: softmax over all items | in-batch: over the batch's targets + n_negatives random items
    n_negatives: int = 0
    contrastive_weight: float = 0.0  # UniSRec in-batch sequence-item contrastive term (last position)
    category_field: str | None = None  # M2TRec-style auxiliary: predict the next item's category (needs dataset)
    category_level: int = 1
    category_weight: float = 0.0
    trainable: str = "all"  # all | adapter (transfer: only the adapter, ID table and category head learn)
    tune_encoder: int = 0  # fine-tune the text encoder's last N layers (needs the item text: dataset= or texts=)
    encoder_lr: float = 5e-5  # their learning rate (Recformer-style: small), whatever train.lr is
    encoder_max_tokens: int = 64  # word pieces per item sentence while tuning
    tune_items: int = 64  # items re-encoded (with gradient) per step; the others come from the cache
    refresh_every: int = 0  # steps between re-encoding every item into the cache (0: at each epoch's start)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=200, batch_size=256, lr=1e-3,
                                                                   patience=10))

    def __post_init__(self) -> None:
        if self.item_repr not in ITEM_REPRS:
            raise ConfigError(f"text-seq: item_repr={self.item_repr!r}; choose one of {', '.join(ITEM_REPRS)}")
        if self.loss not in TEXT_LOSSES:
            raise ConfigError(f"text-seq: loss={self.loss!r}; choose one of {', '.join(TEXT_LOSSES)}")
        if self.activation not in ("gelu", "relu"):
            raise ConfigError(f"text-seq: activation={self.activation!r}; choose gelu or relu")
        if self.unseen_id not in ("nearest", "none"):
            raise ConfigError(f"text-seq: unseen_id={self.unseen_id!r}; choose nearest or none")
        if self.trainable not in ("all", "adapter"):
            raise ConfigError(f"text-seq: trainable={self.trainable!r}; choose all or adapter")
        if min(self.hidden, self.max_len, self.n_experts) < 1 or self.n_layers < 0 or self.temperature < 0:
            raise ConfigError("text-seq: hidden, max_len, n_experts must be >= 1, n_layers and temperature >= 0")
        if not (0 <= self.dropout < 1 and 0 <= self.adapter_dropout < 1 and 0 <= self.id_dropout < 1):
            raise ConfigError("text-seq: dropout, adapter_dropout and id_dropout must be in [0, 1)")
        if self.tune_encoder and ("text" not in self.item_repr or min(self.tune_items, self.encoder_max_tokens) < 1
                                  or self.encoder_lr <= 0 or self.tune_encoder < 0 or self.refresh_every < 0):
            raise ConfigError("text-seq: tune_encoder needs item_repr text or text+id, tune_items and "
                              "encoder_max_tokens >= 1, encoder_lr > 0, refresh_every >= 0")


class TextSeqNet(nn.Module):
    """Item table (adapter(text) [+ id]) and a causal Transformer over left-padded tokens (0 = pad, item i = i+1)."""

    def __init__(self, n_items: int, d_text: int, cfg: TextSeqConfig, n_categories: int = 0,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("text", torch.zeros(n_items, d_text))
        self.register_buffer("seen", torch.ones(n_items))  # 0 for items never trained: no ID vector
        self.register_buffer("categories", torch.full((n_items,), -1, dtype=torch.long))
        self.adapter = MoEAdapter(d_text, cfg.hidden, cfg.n_experts, cfg.adapter_dropout) \
            if "text" in cfg.item_repr else None
        self.id_emb = nn.Embedding(n_items, cfg.hidden) if "id" in cfg.item_repr else None
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.ln_in = nn.LayerNorm(cfg.hidden)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.hidden, cfg.n_heads, cfg.dropout, cfg.activation, cfg.inner)
                                    for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.hidden)
        self.cat_head = nn.Linear(cfg.hidden, n_categories) if n_categories else None
        init_weights(self)
        self.encoder = encoder  # tune_encoder: the text encoder's last layers (after init_weights: pretrained)

    def item_vectors(self, items: torch.Tensor | None = None, text: torch.Tensor | None = None) -> torch.Tensor:
        """(N, hidden) representation of `items` (all items when None); `text` replaces the cached text table."""
        idx = items if items is not None else torch.arange(len(self.text), device=self.text.device)
        text = self.text if text is None else text
        x = self.adapter(text if items is None else text[idx]) if self.adapter is not None else 0
        if self.id_emb is not None:
            rows = self.id_rows()[idx]
            keep = (rows >= 0)[:, None].float()
            if self.training and self.cfg.id_dropout and self.adapter is not None:
                keep = keep * (torch.rand(len(self.text), device=keep.device)[idx, None] >= self.cfg.id_dropout)
            # training, all items: each row is the item's own (or none), so the table itself, not a gather of it
            own = self.training and items is None and len(self.id_emb.weight) == len(rows)
            x = x + (self.id_emb.weight if own else self.id_emb(rows.clamp(min=0))) * keep
        return x

    def id_rows(self, chunk: int = 4096) -> torch.Tensor:
        """(n_items,) ID row each item uses: its own when seen in training; otherwise -1 (none), or when scoring
        with unseen_id=nearest, the row of the seen item whose text vector is nearest (cosine).

        An unseen item's own row is untrained, and leaving it without any ID vector ranks it below every seen item
        whose ID part adds to its score (measured on Scientific's cold split: cold Recall@10 .011 vs .24 with the
        nearest seen item's vector), so it borrows the vector of the item its text says it is most like."""
        seen = self.seen > 0
        rows = torch.where(seen, torch.arange(len(seen), device=seen.device), -1)
        if self.training or self.cfg.unseen_id != "nearest" or self.adapter is None or seen.all() or not seen.any():
            return rows
        unseen, warm = torch.nonzero(~seen).squeeze(1), torch.nonzero(seen).squeeze(1)
        text = F.normalize(self.text, dim=-1)
        for s in range(0, len(unseen), chunk):  # (chunk x n_seen) similarities at a time
            part = unseen[s:s + chunk]
            rows[part] = warm[(text[part] @ text[warm].T).argmax(1)]
        return rows

    def forward(self, tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, d); `table` is (n_tokens, d) with row 0 = padding, indexed by `tokens`."""
        tokens = tokens[:, -self.cfg.max_len:]
        real = (tokens != PAD)[..., None]
        x = table[tokens] + self.pos_emb(positions(tokens.shape[1], self.cfg.max_len, tokens.device))
        x = self.drop(self.ln_in(x)) * real
        mask = attention_mask(tokens, causal=True)
        for block in self.blocks:
            x = block(x, mask) * real
        return self.ln_f(x)

    def similarity(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits: cosine / temperature (UniSRec), or the dot product when temperature is 0."""
        if self.cfg.temperature:  # 1/temperature on the (P, d) side: one pass less over the (P, n_items) logits
            return (F.normalize(users, dim=-1) / self.cfg.temperature) @ F.normalize(items, dim=-1).T
        return users @ items.T


def _pad_row(table: torch.Tensor) -> torch.Tensor:
    return torch.cat([table.new_zeros(1, table.shape[1]), table])


@register
class TextSeq(TorchRecommender):
    """Text-based sequential recommender; `add_items(vectors)` scores new items from their text alone."""

    name = "text-seq"
    Config = TextSeqConfig
    dot_product = True  # embed_users(h) @ item_embeddings().T is the score

    def __init__(self, n_items: int, config: TextSeqConfig | None = None, vectors: np.ndarray | None = None,
                 categories: np.ndarray | None = None, texts: list[str] | None = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self._texts = texts  # item sentences (row = item_idx): needed by tune_encoder
        self._prefix: tuple[torch.Tensor, torch.Tensor] | None = None  # frozen encoder layers' output per item
        self._stale, self._steps = False, 0  # tune_encoder: cache older than the tuned layers; steps taken
        self._vectors = None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)
        self._categories = categories
        self._d_text: int | None = None if vectors is None else int(vectors.shape[1])
        self._n_categories = 0 if categories is None else int(np.max(categories, initial=-1) + 1)
        self._seen: np.ndarray | None = None
        self._table: torch.Tensor | None = None  # item table cached while scoring

    # ------------------------------------------------------------------ construction
    def _resolve_inputs(self) -> None:
        cfg = self.config
        if cfg.tune_encoder:
            if self._texts is None:
                self._texts = load_item_texts(self.n_items, cfg.dataset, cfg.fields)
        elif self._vectors is None and "text" in cfg.item_repr:
            self._vectors = cfg.item_vectors(self.n_items, device=self.train_config.device)
            self._d_text = int(self._vectors.shape[1])
        if self._categories is None and cfg.category_weight > 0:
            if not cfg.dataset or not cfg.category_field:
                raise ConfigError("text-seq: category_weight > 0 needs --set category_field=COLUMN (e.g. categories) "
                                  "and the dataset's item table (--set dataset=DATA_FOLDER)")
            from semrec.data import Dataset

            self._categories = category_labels(Dataset.load(cfg.dataset).items, cfg.category_field,
                                               cfg.category_level)
            self._n_categories = int(self._categories.max(initial=-1) + 1)

    def build_module(self) -> nn.Module:
        cfg = self.config
        if self._d_text is None:  # not when loading a saved model: its item table is in the weights
            self._resolve_inputs()
        encoder = vectors = None
        if cfg.tune_encoder:  # item vectors come from the encoder itself (its last layers will move)
            from semrec.models.text.tuned_encoder import TunedEncoder

            encoder = TunedEncoder(cfg.encoder, cfg.tune_encoder, cfg.encoder_max_tokens)
            if self._texts is not None:
                self._prefix = encoder.prefix(self._texts)
                vectors = encoder.encode(*self._prefix)
                self._d_text = vectors.shape[1]
        d_text = self._d_text or 1
        net = TextSeqNet(self.n_items, d_text, cfg, self._n_categories, encoder)
        with torch.no_grad():
            if vectors is not None:
                net.text.copy_(vectors)
            elif self._vectors is not None:
                net.text.copy_(torch.from_numpy(self._vectors))
            if self._categories is not None:
                net.categories.copy_(torch.from_numpy(np.asarray(self._categories, dtype=np.int64)))
            if self._seen is not None:
                net.seen.copy_(torch.from_numpy(self._seen.astype(np.float32)))
        return net

    def build(self, device: str | torch.device = "cpu") -> TextSeq:
        super().build(device)
        self._apply_trainable()
        return self

    def _apply_trainable(self) -> None:
        keep = ("adapter.", "id_emb.", "cat_head.", "encoder.delta.") if self.config.trainable == "adapter" else ("",)
        for name, p in self.module.named_parameters():
            p.requires_grad_(name.startswith(keep) and not name.startswith("encoder.layers."))  # W0 stays frozen

    def extra_state(self) -> dict[str, Any]:
        return {"d_text": int(self.module.text.shape[1]), "n_categories": self._n_categories}

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> TextSeq:
        model = cls(n_items, config)
        model._d_text, model._n_categories = int(extra["d_text"]), int(extra.get("n_categories", 0))
        return model.build(device)

    # ------------------------------------------------------------------ training
    def fit(self, train: Sequences, valid=None) -> TextSeq:
        check_items(train, self.n_items)
        if self.config.tune_encoder and self.module is not None and self._prefix is None:  # a loaded model
            if self._texts is None:
                self._texts = load_item_texts(self.n_items, self.config.dataset, self.config.fields)
            self._prefix = self.module.encoder.prefix(self._texts)
        self._seen = np.bincount(train.items, minlength=self.n_items) > 0
        if self.module is not None:
            self.module.seen.copy_(torch.from_numpy(self._seen.astype(np.float32)))
        self._table = None
        super().fit(train, valid)
        if self._stale:
            self._refresh()  # the saved item table matches the tuned encoder
        return self

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(int((train.lengths >= 2).sum()) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator
                ) -> Iterator[dict[str, torch.Tensor]]:
        """Whole sequences (last max_len + 1 items), shuffled; every position predicts the next item."""
        seqs = train.select(np.flatnonzero(train.lengths >= 2))
        tuning = self._prefix is not None
        if tuning:
            self._refresh()  # every item's vector from the current encoder, once per epoch
        for rows in epoch_rows(len(seqs), batch_size, rng):
            inputs, targets = next_item_pairs(seqs.select(rows), self.config.max_len)
            batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
            if tuning:
                batch["tune_items"] = torch.from_numpy(pick_tune_items(inputs, targets, self.config.tune_items, rng))
            if self.config.loss == "in-batch" and self.config.n_negatives:
                batch["negatives"] = torch.from_numpy(sample_negatives(rng, (self.config.n_negatives,), self.n_items))
            yield batch

    def shared_batch_keys(self) -> frozenset[str]:
        return frozenset({"negatives", "tune_items"})  # one set for the whole batch

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        net, cfg = self.module, self.config
        inputs, targets = batch["inputs"], batch["targets"]
        text = self._tuned_text(batch["tune_items"]) if "tune_items" in batch else None
        if cfg.loss == "ce":
            items = net.item_vectors(text=text)  # (n_items, d): every item is a candidate
            hidden = net(inputs, _pad_row(items))
            valid = targets != PAD
            h, pos = hidden[valid], targets[valid] - 1
            cand = None if cfg.unseen_negatives else self._candidates()
            if cand is None:
                loss = F.cross_entropy(net.similarity(h, items), pos)
            else:  # items never seen in training are no candidates: they can never be a target
                loss = F.cross_entropy(net.similarity(h, items[cand[0]]), cand[1][pos])
        else:  # candidates: this batch's items (+ shared random negatives); only they pass through the adapter
            pool = [inputs.flatten(), targets.flatten(), inputs.new_zeros(1)]
            pool += [batch["negatives"]] if "negatives" in batch else []
            uniq, inverse = torch.unique(torch.cat(pool), return_inverse=True)  # uniq[0] == PAD: it is in the pool
            vecs = net.item_vectors((uniq - 1).clamp(min=0), text) * (uniq != PAD)[:, None]
            n_in = inputs.numel()
            hidden = net(inverse[:n_in].view_as(inputs), vecs)
            local = inverse[n_in:n_in + targets.numel()].view_as(targets)
            valid = targets != PAD
            h, pos = hidden[valid], local[valid]
            logits = net.similarity(h, vecs)
            drop = uniq == PAD
            if not cfg.unseen_negatives:
                drop = drop | (net.seen[(uniq - 1).clamp(min=0)] == 0)
            logits = logits.masked_fill(drop, -math.inf)
            loss = F.cross_entropy(logits, pos)
        if cfg.contrastive_weight:  # last position of each row vs the batch's last targets (UniSRec seq-item)
            last_t = targets[:, -1]
            keep = last_t != PAD
            tv = net.item_vectors(last_t[keep] - 1, text)
            logits = net.similarity(hidden[:, -1][keep], tv)
            dup = last_t[keep][:, None] == last_t[keep][None, :]
            logits = logits.masked_fill(dup & ~torch.eye(len(tv), dtype=torch.bool, device=tv.device), -math.inf)
            loss = loss + cfg.contrastive_weight * F.cross_entropy(logits, torch.arange(len(tv), device=tv.device))
        if net.cat_head is not None and cfg.category_weight:
            cat = net.categories[targets[valid] - 1]
            if (cat >= 0).any():
                loss = loss + cfg.category_weight * F.cross_entropy(net.cat_head(h), cat, ignore_index=-1)
        return loss

    def _candidates(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(items seen in training, item -> their column) for the training softmax; None when all items were seen."""
        seen = self.module.seen > 0
        if bool(seen.all()):
            return None
        cand = torch.nonzero(seen).squeeze(1)
        column = torch.full((len(seen),), -1, dtype=torch.long, device=seen.device)
        column[cand] = torch.arange(len(cand), device=seen.device)
        return cand, column

    def _tuned_text(self, items: torch.Tensor) -> torch.Tensor:
        """The text table with `items` re-encoded through the tuned layers (with gradient); the rest cached."""
        net, cfg = self.module, self.config
        if self._prefix[0].device != net.text.device:
            self._prefix = tuple(t.to(net.text.device) for t in self._prefix)
        self._steps += 1
        self._stale = True
        if cfg.refresh_every and self._steps % cfg.refresh_every == 0:
            self._refresh()
        if not len(items):
            return net.text
        net.encoder.scale = cfg.encoder_lr / cfg.train.lr
        return net.text.index_put((items,), net.encoder(self._prefix[0][items], self._prefix[1][items]))

    def _refresh(self) -> None:
        """Re-encode every item through the tuned layers into the cached text table (no gradient)."""
        net = self.module
        if self._prefix is None or net is None or net.encoder is None:
            return
        net.encoder.scale = self.config.encoder_lr / self.config.train.lr
        with torch.no_grad():
            net.text.copy_(net.encoder.encode(*(t.to(net.text.device) for t in self._prefix)))
        self._stale, self._table = False, None

    # ------------------------------------------------------------------ scoring
    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        if self._stale:
            self._refresh()  # scores (and a best-epoch snapshot taken after validation) use the current encoder
        with super().scoring():
            self._table = None
            try:
                yield
            finally:
                self._table = None

    def _item_table(self) -> torch.Tensor:
        if self._table is None or torch.is_grad_enabled():
            table = self.module.item_vectors()
            if torch.is_grad_enabled():
                return table
            self._table = table
        return self._table

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(n, d) user vectors (unit length / temperature): `embed_users(h) @ item_embeddings().T` == `score(h)`."""
        return self.batched_vectors(histories, self._user_vectors)

    def _user_vectors(self, histories: Sequences) -> torch.Tensor:
        check_items(histories, self.n_items)
        tokens = torch.from_numpy(padded_tokens(histories, self.config.max_len)).to(self.device)
        h = self.module(tokens, _pad_row(self._item_table()))[:, -1]
        t = self.config.temperature
        return F.normalize(h, dim=-1) / t if t else h

    def item_embeddings(self) -> np.ndarray:
        """(n_items, d) item vectors (unit length with a temperature), the right side of the score."""
        with self.scoring():
            table = self._item_table()
            return (F.normalize(table, dim=-1) if self.config.temperature else table).cpu().numpy()

    def text_embeddings(self) -> np.ndarray:
        """(n_items, d_text) the item text vectors the adapter reads (before it), the source of text-pooled users."""
        return self.module.text.detach().float().cpu().numpy()

    def score_factors(self, histories: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
        table = self._item_table()
        return self._user_vectors(histories), F.normalize(table, dim=-1) if self.config.temperature else table

    # ------------------------------------------------------------------ catalogue changes and transfer
    def add_items(self, vectors: np.ndarray, categories: np.ndarray | None = None) -> np.ndarray:
        """Append items described only by their text vectors (no retraining); returns their new item indices.

        Like items never seen in training they use no ID row of their own: under text+id they take the ID vector
        of the seen item nearest in text (`unseen_id`). With tune_encoder, encode them with the tuned encoder."""
        from semrec.models.text.transfer import grow_catalogue

        return grow_catalogue(self, vectors, categories)

    def init_from(self, path: str, strict_shapes: bool = True) -> list[str]:
        """Copy a pretrained text-seq's adapter and Transformer (not its catalogue: text, IDs, categories)."""
        from semrec.models.text.transfer import init_from

        return init_from(self, path, strict_shapes)


__all__ = ["TextSeq", "TextSeqConfig", "TextSeqNet"]
