"""`user-text`: a user encoder whose output lives in the text encoder's space, so a user vector, an item's text
vector and a typed query are directly comparable.

A causal Transformer reads the history (each item = projected text vector + optional learned id vector) and
maps its last state into the text space (unit length). Training is contrastive: at every position the user
vector must be closest, among all items' text vectors, to the text vector of the item chosen next (full softmax,
temperature `temperature`). With instruction tasks (instruct.py) the encoder is also FiLM-conditioned on an
instruction's text vector and trained to point at the text of the right answer (InstructUE-style, multi-task).

Query-aware recommendation: `recommend(histories, query="waterproof boots")` ranks items by
`normalize((1 - w) * user + w * query) @ item_text.T`, w = `query_weight` (0: history only, 1: query only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.models.base import TorchRecommender, register
from semrec.models.layers import (PAD, Block, Dropout, attention_mask, check_items, epoch_rows, init_weights,
                                  next_item_pairs, padded_tokens, positions)
from semrec.models.user.instruct import InstructTask, dataset_tasks, task_targets
from semrec.training.config import TrainConfig


@dataclass
class UserTextConfig:
    """Item text comes from `dataset` (its text fields, or `fields`) or `vectors_path`; `instructions` adds the
    dataset's instruction tasks. Sizes fit a 2-core CPU."""

    dataset: str | None = None
    vectors_path: str | None = None
    fields: list[str] | None = None
    encoder: str | None = None  # sentence-transformers folder; None: the bundled all-MiniLM-L6-v2
    cache_dir: str | None = "runs/cache/text"
    hidden: int = 128
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    id_input: bool = True  # add a learned per-item vector to the text input (output side stays pure text)
    temperature: float = 0.05
    query_weight: float = 0.5  # blend of query and user vector in recommend(query=...)
    instructions: bool = False
    tasks_per_batch: int = 1  # instruction tasks trained on each batch (drawn at random; more = slower, steadier)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=100, batch_size=256, lr=1e-3,
                                                                   patience=5))

    def __post_init__(self) -> None:
        if min(self.hidden, self.n_layers, self.n_heads, self.max_len) < 1 or self.temperature <= 0:
            raise ConfigError("user-text: hidden, n_layers, n_heads, max_len must be >= 1 and temperature > 0")
        if self.tasks_per_batch < 1:
            raise ConfigError(f"user-text: tasks_per_batch must be >= 1, got {self.tasks_per_batch}")
        if not 0.0 <= self.query_weight <= 1.0:
            raise ConfigError(f"user-text: query_weight must be in [0, 1], got {self.query_weight}")


class UserTextNet(nn.Module):
    """tokens (B, L) left-padded (item i = i + 1) [+ instruction vectors (B, D)] -> unit user vectors (B, L, D)."""

    def __init__(self, text: torch.Tensor, cfg: UserTextConfig, answer_sizes: list[int]):
        super().__init__()
        n_items, d_text = text.shape
        self.max_len, h = cfg.max_len, cfg.hidden
        self.register_buffer("text", F.normalize(text.float(), dim=1))
        self.in_proj = nn.Linear(d_text, h)
        self.id_emb = nn.Embedding(n_items + 1, h, padding_idx=PAD) if cfg.id_input else None
        self.pos_emb = nn.Embedding(cfg.max_len, h)
        self.film = nn.Linear(d_text, 2 * h, bias=False)  # instruction -> (gamma, beta); zero: no instruction
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(h, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(h)
        self.out_proj = nn.Linear(h, d_text)
        for i, n in enumerate(answer_sizes):  # answer sentences' text vectors and the instruction's
            self.register_buffer(f"answers_{i}", torch.zeros(n, d_text))
            self.register_buffer(f"instruction_{i}", torch.zeros(d_text))
        init_weights(self)
        nn.init.zeros_(self.film.weight)
        if self.id_emb is not None:
            nn.init.zeros_(self.id_emb.weight)

    def forward(self, tokens: torch.Tensor, instruction: torch.Tensor | None = None) -> torch.Tensor:
        tokens = tokens[:, -self.max_len:]
        real = (tokens != PAD)[..., None]
        table = torch.cat([self.text.new_zeros(1, self.text.shape[1]), self.text])
        x = self.in_proj(table[tokens])
        if self.id_emb is not None:
            x = x + self.id_emb(tokens)
        if instruction is not None:
            gamma, beta = self.film(instruction).chunk(2, dim=-1)
            x = x * (1 + gamma[:, None]) + beta[:, None]
        x = self.drop(x + self.pos_emb(positions(tokens.shape[1], self.max_len, tokens.device))) * real
        mask = attention_mask(tokens, causal=True)
        for block in self.blocks:
            x = block(x, mask) * real
        out = self.ln_f(x)
        if instruction is not None:
            out = out * (1 + gamma[:, None]) + beta[:, None]
        return F.normalize(self.out_proj(out), dim=-1)


@register
class UserText(TorchRecommender):
    """Text-aligned user encoder (dot-product: `embed_users(h) @ item_embeddings().T` = its scores)."""

    name = "user-text"
    Config = UserTextConfig
    dot_product = True
    query_aware = True  # recommend(histories, query=...) blends a text query into the user vector

    def __init__(self, n_items: int, config: UserTextConfig | None = None, vectors: np.ndarray | None = None,
                 tasks: list[InstructTask] | None = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self._vectors = None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)
        self.tasks = list(tasks) if tasks is not None else None
        self._encoder = None

    # ------------------------------------------------------------------ text
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Text vectors of `texts` with the model's encoder (cached), (n, D) float32."""
        from semrec.features import TextEncoder

        if self._encoder is None:
            self._encoder = TextEncoder(model=self.config.encoder, cache_dir=self.config.cache_dir, progress=False)
        return self._encoder.encode([str(t) for t in texts])

    def _item_text(self) -> np.ndarray:
        if self._vectors is not None:
            return self._vectors
        cfg = self.config
        if cfg.vectors_path:
            from semrec.features import load_vectors

            vecs = load_vectors(cfg.vectors_path)
        elif cfg.dataset:
            from semrec.data import Dataset, item_sentences

            ds = Dataset.load(cfg.dataset)
            names = list(cfg.fields or ds.text_fields or [])
            if not names:
                raise ConfigError(f"dataset {cfg.dataset} has no text fields (fix: --set fields='[\"title\"]')")
            vecs = self.encode_text(item_sentences(ds.items, names))
        else:
            raise ConfigError("user-text needs item text (fix: --set dataset=DATA_FOLDER or "
                              "--set vectors_path=V.safetensors)")
        if len(vecs) != self.n_items:
            raise ConfigError(f"user-text: {len(vecs)} item text vectors for {self.n_items} items "
                              "(fix: embed the dataset the model is trained on)")
        self._vectors = np.ascontiguousarray(vecs, dtype=np.float32)
        return self._vectors

    # ------------------------------------------------------------------ build / persistence
    def build_module(self) -> nn.Module:
        if self.tasks is None:
            self.tasks = []
            if self.config.instructions:
                if not self.config.dataset:
                    raise ConfigError("user-text: instructions=true needs dataset=DATA_FOLDER (tasks come from it)")
                from semrec.data import Dataset

                self.tasks = dataset_tasks(Dataset.load(self.config.dataset))
        net = UserTextNet(torch.from_numpy(self._item_text()), self.config, [len(t.answers) for t in self.tasks])
        for i, t in enumerate(self.tasks):
            if t.answers and not getattr(t, "_from_state", False):
                getattr(net, f"answers_{i}").copy_(torch.from_numpy(self.encode_text(t.answers)))
                getattr(net, f"instruction_{i}").copy_(torch.from_numpy(self.encode_text([t.instruction])[0]))
        return net

    @property
    def instruction_aware(self) -> bool:
        return bool(self.tasks)

    def extra_state(self) -> dict[str, Any]:
        return {"d_text": int(self._item_text().shape[1]),
                "tasks": [{"name": t.name, "instruction": t.instruction, "answers": t.answers, "per": t.per}
                          for t in self.tasks or []]}

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> "UserText":
        tasks = []
        for t in extra.get("tasks", []):
            task = InstructTask(t["name"], t["instruction"], t["answers"], np.zeros(0, np.int64), t["per"])
            task._from_state = True  # vectors come from the saved buffers
            tasks.append(task)
        model = cls(n_items, config, vectors=np.zeros((n_items, extra["d_text"]), np.float32), tasks=tasks)
        return model.build(device=device)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self._vectors = self.module.text.cpu().numpy()

    # ------------------------------------------------------------------ training
    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(int((train.lengths >= 2).sum()) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator
                ) -> Iterator[dict[str, torch.Tensor]]:
        """Whole sequences; with tasks, one task per batch (drawn from `rng`) and its labels."""
        check_items(train, self.n_items)
        users = np.flatnonzero(train.lengths >= 2)
        for rows in epoch_rows(len(users), batch_size, rng):
            part = train.select(users[rows])
            inputs, targets = next_item_pairs(part, self.config.max_len)
            batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
            if self.tasks:
                chosen = rng.choice(len(self.tasks), min(self.config.tasks_per_batch, len(self.tasks)), replace=False)
                hist = [row[row != PAD] - 1 for row in inputs]
                labels = [task_targets(self.tasks[t], users[rows], hist, targets[:, -1] - 1) for t in chosen]
                batch |= {"tasks": torch.from_numpy(chosen), "task_labels": torch.from_numpy(np.stack(labels))}
            yield batch

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        net, tau = self.module, self.config.temperature
        users = net(batch["inputs"])
        valid = batch["targets"] != PAD
        loss = F.cross_entropy(users[valid] @ net.text.T / tau, batch["targets"][valid] - 1)
        for t, labels in zip(batch.get("tasks", []), batch.get("task_labels", [])):
            known = labels >= 0
            if known.any():
                instr = getattr(net, f"instruction_{int(t)}").expand(int(known.sum()), -1)
                u = net(batch["inputs"][known], instr)[:, -1]
                loss = loss + F.cross_entropy(u @ getattr(net, f"answers_{int(t)}").T / tau, labels[known])
        return loss

    # ------------------------------------------------------------------ vectors and scores
    def _instruction_vector(self, instruction: str | None) -> torch.Tensor | None:
        if instruction is None:
            return None
        for i, t in enumerate(self.tasks or []):  # a trained instruction: its stored vector (no encoder needed)
            if t.instruction == instruction:
                return getattr(self.module, f"instruction_{i}")
        return torch.from_numpy(self.encode_text([instruction])[0]).to(self.device)

    def _user_state(self, histories: Sequences, instruction: torch.Tensor | None = None) -> torch.Tensor:
        check_items(histories, self.n_items)
        tokens = torch.from_numpy(padded_tokens(histories, self.config.max_len)).to(self.device)
        instr = None if instruction is None else instruction.expand(len(tokens), -1)
        return self.module(tokens, instr)[:, -1]

    def embed_users(self, histories: Sequences, instruction: str | None = None) -> np.ndarray:
        """(n, D) unit user vectors in the text space; `instruction` conditions them (instruction-aware models)."""
        with self.scoring():
            instr = self._instruction_vector(instruction)
        return self.batched_vectors(histories, lambda h: self._user_state(h, instr))

    def item_embeddings(self) -> np.ndarray:
        """(n_items, D) unit item text vectors (the encoder's, unchanged by training)."""
        return self.module.text.detach().cpu().numpy()

    def text_embeddings(self) -> np.ndarray:
        """(n_items, D) frozen item text vectors, the source of text-pooled user vectors (= item_embeddings here)."""
        return self.item_embeddings()

    def score_factors(self, histories: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
        return self._user_state(histories), self.module.text

    def answer(self, histories: Sequences, task: str) -> np.ndarray:
        """(n, n_answers) probabilities over a trained task's answer sentences (e.g. task='gender')."""
        names = [t.name for t in self.tasks or []]
        if task not in names:
            raise ConfigError(f"user-text: no trained task {task!r}; trained: {names}")
        i = names.index(task)
        u = torch.from_numpy(self.embed_users(histories, self.tasks[i].instruction)).to(self.device)
        logits = u @ getattr(self.module, f"answers_{i}").T / self.config.temperature
        return torch.softmax(logits, -1).cpu().numpy()

    def recommend(self, histories: Sequences, k: int = 10, exclude: Sequences | None = None,
                  query: str | list[str] | None = None, query_weight: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items; with `query` (one text, or one per history) the user vector is blended with the query's
        text vector: normalize((1 - w) * user + w * query), w = `query_weight` (default config.query_weight)."""
        if query is None:
            return super().recommend(histories, k, exclude)
        w = self.config.query_weight if query_weight is None else float(query_weight)
        if not 0.0 <= w <= 1.0:
            raise ConfigError(f"query_weight must be in [0, 1], got {w}")
        texts = [query] * len(histories) if isinstance(query, str) else list(query)
        if len(texts) != len(histories):
            raise ConfigError(f"{len(texts)} queries for {len(histories)} histories (one query, or one per history)")
        users = torch.from_numpy(self.embed_users(histories)) if w < 1 else torch.zeros(len(texts), 1)
        q = torch.from_numpy(self.encode_text(texts))
        blended = F.normalize((1 - w) * users + w * F.normalize(q, dim=1), dim=1)
        return _top_k(blended @ self.module.text.detach().cpu().T, k, exclude)


def _top_k(scores: torch.Tensor, k: int, exclude: Sequences | None) -> tuple[np.ndarray, np.ndarray]:
    if exclude is not None:
        r = torch.from_numpy(np.repeat(np.arange(len(exclude)), exclude.lengths))
        scores = scores.index_put((r, torch.from_numpy(exclude.items)), torch.tensor(-math.inf))
    top = torch.topk(scores, min(int(k), scores.shape[1]), dim=1)
    return top.indices.numpy(), top.values.numpy()
