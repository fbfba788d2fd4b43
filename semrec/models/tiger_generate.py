"""What every semantic-ID generative model shares: its code table and trie, batched trie-constrained
`recommend`, cold-start reservation, adding/removing items without retraining, and safetensors state.

Items unseen in training (cold items, items added while serving) have a last code the model never saw after
their prefix: for the TIGER disambiguation level it is an arbitrary index, so the model's probability for it is
noise and such items almost never reach a top-k. With `unseen_last_code="siblings"` an unseen item's last code
instead gets the mean probability of its trained siblings (the trained items under the same prefix): it ranks
like an average item of its semantic group, which its prefix already earned.

A model using this mixin provides `module.step_factory(hist_codes, users)`: the per-user work (encoder, history
state) done once, returning a function that starts a fresh `semrec.generation.StepFn` over it, so the cold-start
reservation's second search does not encode the users again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.generation import CodeTrie, beam_search
from semrec.models.tiger_layers import item_codes, load_codes, user_buckets


UNSEEN_LAST_CODES = ("model", "siblings")


def check_unseen_last_code(model: str, value: str) -> None:
    """Config check shared by the generative models' `unseen_last_code` option."""
    if value not in UNSEEN_LAST_CODES:
        raise ConfigError(f"{model}: unseen_last_code must be 'model' or 'siblings', got {value!r}")


class GenerativeMixin:
    """Code table (saved with the weights), trie, and decoding for TIGER-style models."""

    def init_codes(self, codes: np.ndarray | None, codebook_sizes: list[int] | None = None) -> None:
        """Take the code table (argument, else `config.codes_path`); codebook sizes default to max code + 1."""
        if codes is None and self.config.codes_path:
            codes, codebook_sizes = load_codes(self.config.codes_path, self.n_items)
        self.codes = None if codes is None else np.asarray(codes, dtype=np.int64)
        self.module = None
        self._trie: CodeTrie | None = None
        if self.codes is not None:
            if len(self.codes) != self.n_items:
                raise ConfigError(f"code table has {len(self.codes)} rows for {self.n_items} items")
            self.vocab_sizes = [int(v) for v in self.codes.max(axis=0) + 1]
            if codebook_sizes is not None:
                self.vocab_sizes = [max(a, int(b)) for a, b in zip(self.vocab_sizes, codebook_sizes)]
            self.active = self.codes.min(axis=1) >= 0
            self.seen = np.zeros(self.n_items, dtype=bool)

    def codes_on(self, device: torch.device) -> torch.Tensor:
        """The code table as a tensor on `device`, cached (a normal tensor even if first made during validation,
        which runs under inference mode)."""
        t = getattr(self, "_codes_t", None)
        if t is None or t.device != device:
            with torch.inference_mode(False):
                t = self._codes_t = torch.as_tensor(self.codes, device=device)
        return t

    def require_codes(self) -> None:
        if self.codes is None:
            raise ConfigError(f"{self.name} needs a code table: pass codes=... or set codes_path in its config",)

    # ------------------------------------------------------------------ catalogue
    @property
    def trie(self) -> CodeTrie:
        if self._trie is None:
            self._trie = CodeTrie(self.codes, self.vocab_sizes, self.active, self.config.device)
        return self._trie

    def mark_seen(self, train: Sequences) -> None:
        """Remember which items training contains (the rest are cold-start items for `reserve_new`)."""
        self.require_codes()
        self.seen = np.bincount(train.items, minlength=self.n_items)[: self.n_items] > 0

    def pair_users(self, train: Sequences) -> np.ndarray:
        """Hashed user token of every training pair (row i of `train` is user i)."""
        n_pairs = np.maximum(train.lengths - 1, 0)
        users = np.repeat(np.arange(len(train)), n_pairs)
        return user_buckets(users, len(users), self.config.user_buckets)

    def add_items(self, items: np.ndarray, codes: np.ndarray) -> None:
        """Make new (or changed) items recommendable from their codes, without retraining.

        Codes must lie inside the trained codebooks; items beyond `n_items` grow the catalogue.
        """
        self.trie.add(items, codes)
        self.codes, self.active, self._codes_t = self.trie.codes, self.trie.active, None
        if len(self.codes) > self.n_items:
            self.seen = np.concatenate([self.seen, np.zeros(len(self.codes) - self.n_items, bool)])
            self.n_items = len(self.codes)

    def remove_items(self, items: np.ndarray) -> None:
        """Stop recommending `items` (e.g. out of stock); their codes are kept."""
        self.trie.remove(items)
        self.active = self.trie.active

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def recommend(self, histories: Sequences, k: int = 10, exclude: Sequences | None = None,
                  users: np.ndarray | None = None, beam: int | None = None, trie: CodeTrie | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k distinct catalogue items per history by generated-code log-probability, best first.

        `exclude` drops those items after decoding (the beam is widened by their count, capped at 4x);
        `users` feeds the hashed user token when the model has one; `trie` restricts decoding to a subset of
        the catalogue (e.g. `self.trie.subset(mask=...)` for an attribute filter), default: the whole trie.
        """
        if self.module is None:
            raise ConfigError(f"{self.name} is not trained: call fit() or load a saved model")
        cfg = self.config
        self.module.eval()
        beam = max(beam or cfg.beam, k)
        dev = cfg.device
        codes = torch.as_tensor(self.codes, device=dev)
        n = len(histories)
        hist = histories.to_padded(cfg.max_history, pad=-1)
        ub = user_buckets(users, n, cfg.user_buckets)
        out_items, out_scores = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
        for s in range(0, n, cfg.decode_batch):
            h = torch.as_tensor(hist[s:s + cfg.decode_batch], device=dev)
            rows = h.shape[0]
            hc = item_codes(codes, h)
            u = torch.as_tensor(ub[s:s + rows], device=dev)
            extra = 0
            if exclude is not None:
                extra = int(min(exclude.lengths[s:s + rows].max(initial=0), 3 * beam))
            items, scores = self._search(hc, u, h, beam + extra, k + extra, trie)
            if exclude is not None:
                items, scores = _drop_excluded(items, scores, exclude.select(np.arange(s, s + rows)), k)
            out_items[s:s + rows], out_scores[s:s + rows] = items.cpu().numpy(), scores.cpu().numpy()
        return out_items, out_scores

    def _sibling_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(trained, unseen): bool (prefix node, last code) over the whole trie's last-level prefixes; cached
        until the trie is recompiled (items added or removed)."""
        trie = self.trie
        cached = getattr(self, "_siblings", None)
        if cached is not None and cached[0] is trie.levels:
            return cached[1]
        lv = trie.levels[-1]
        ptr = lv.ptr.cpu().numpy()
        parent = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
        code = lv.code.cpu().numpy()
        item = trie.leaf_item.cpu().numpy()
        seen = np.zeros(len(item), bool)
        inside = item < len(self.seen)
        seen[inside] = self.seen[item[inside]]
        tables = []
        for flag in (seen, ~seen):
            t = np.zeros((len(ptr) - 1, lv.vocab), bool)
            t[parent[flag], code[flag]] = True
            tables.append(torch.as_tensor(t, device=trie.device))
        self._siblings = (trie.levels, (tables[0], tables[1]))
        return self._siblings[1]

    def _unseen_as_siblings(self, step: Any, rows: int) -> Any:
        """Wrap a step function: at the last level, an unseen item's code gets log(mean p(trained siblings)).

        Follows every row's prefix in the whole trie (so a restricted search scores items as the full one does);
        prefixes without a trained sibling keep the model's own probabilities."""
        trie = self.trie
        last = trie.n_levels - 1
        trained, unseen = self._sibling_tables()
        node = torch.zeros(rows, dtype=torch.int64, device=trie.device)

        def wrapped(level: int, tokens: torch.Tensor | None, parents: torch.Tensor | None) -> torch.Tensor:
            nonlocal node
            logp = step(level, tokens, parents)
            if level > 0:
                prev = node[parents]
                node = torch.where(prev >= 0, trie.child(level - 1, prev.clamp(min=0), tokens), -1)
            if level == last:
                ok = (node >= 0)[:, None]
                tr, un = trained[node.clamp(min=0)] & ok, unseen[node.clamp(min=0)] & ok
                n = tr.sum(-1, keepdim=True)
                mean = torch.logsumexp(logp.masked_fill(~tr, float("-inf")), -1, keepdim=True) - n.clamp(min=1).log()
                logp = torch.where(un & (n > 0), mean, logp)
            return logp

        return wrapped

    def _step(self, start: Any, rows: int) -> Any:
        step = start()
        if self.config.unseen_last_code == "siblings":
            n = min(len(self.seen), len(self.active))
            if (self.active[:n] & ~self.seen[:n]).any():
                step = self._unseen_as_siblings(step, rows)
        return step

    def step_factory(self, hist_codes: torch.Tensor, users: torch.Tensor, hist_items: torch.Tensor):
        """For one batch of left-padded histories (codes, user tokens, items): a function starting a fresh step
        function of the network, the users' encoding shared by all of them."""
        return self.module.step_factory(hist_codes, users)

    def _search(self, hc: torch.Tensor, users: torch.Tensor, hist: torch.Tensor, beam: int, k: int,
                trie: CodeTrie | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = hc.shape[0]
        trie = self.trie if trie is None else trie
        start = self.step_factory(hc, users, hist)
        items, scores = beam_search(self._step(start, rows), trie, rows, beam, k)
        n_new = int(round(self.config.reserve_new * k))
        new = trie.active[: len(self.seen)] & ~self.seen
        if n_new == 0 or not new.any():
            return items, scores
        # reserve n_new slots for the best unseen items (a search over their own trie), spread evenly over the
        # list (ranks ceil(j / share) - 1), so every cut-off K holds about share * K of them; the other slots
        # keep the normal search's order. Scores stay the model's own log-probabilities.
        new_trie = trie.subset(mask=new)
        n_new = min(n_new, int(new.sum()))
        # the reserved share of the list gets the same share of the beam: measured on Scientific's cold split
        # (tiger-hier, beam 20, reserve 0.2) a beam of 20 here made decoding 1.63x the cost of reserve 0, a beam of
        # 4 1.02x, with cold-row validation and test Recall@10 no lower (benchmarks/notes/decoding.md)
        new_beam = max(n_new, math.ceil(beam * self.config.reserve_new))
        new_items, new_scores = beam_search(self._step(start, rows), new_trie, rows, new_beam, n_new)
        is_new = torch.as_tensor(new, device=items.device)[items.clamp(min=0)] & (items >= 0)
        old_scores, pos = torch.where(is_new, float("-inf"), scores).topk(k - n_new, dim=1)
        j = torch.arange(1, n_new + 1, device=items.device)
        at = torch.minimum(torch.ceil(j / self.config.reserve_new).long() - 1, k - n_new + j - 1)  # strictly increasing
        slot = torch.zeros(k, dtype=torch.bool, device=items.device)
        slot[at] = True
        out_items = torch.empty((rows, k), dtype=items.dtype, device=items.device)
        out_scores = torch.empty((rows, k), dtype=scores.dtype, device=items.device)
        out_items[:, slot], out_scores[:, slot] = new_items, new_scores
        out_items[:, ~slot], out_scores[:, ~slot] = items.gather(1, pos), old_scores
        return out_items, out_scores

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.module.state_dict().items()}
        state |= {"codes": torch.as_tensor(self.codes), "active": torch.as_tensor(self.active),
                  "seen": torch.as_tensor(self.seen)}
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.codes = state["codes"].cpu().numpy().astype(np.int64)
        self.active, self.seen = state["active"].cpu().numpy(), state["seen"].cpu().numpy()
        self.n_items, self._trie = len(self.codes), None
        self.module.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        self.module.eval()

    def extra_state(self) -> dict[str, Any]:
        emb = getattr(self.module, "item_emb", None)  # the per-item table keeps its trained size after add_items
        trained = self.n_items if emb is None else emb.num_embeddings - 1
        return {"vocab_sizes": self.vocab_sizes, "n_levels": len(self.vocab_sizes), "n_items_trained": trained}

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> Any:
        config.codes_path = None  # the code table comes from model.safetensors (it sets n_items, added items too)
        config.device = device
        model = cls(int(extra.get("n_items_trained", n_items)), config)
        model.vocab_sizes = [int(v) for v in extra["vocab_sizes"]]
        model.restore_extra(extra)
        model.build(device=device)
        return model

    def restore_extra(self, extra: dict[str, Any]) -> None:
        """Hook: take what a subclass's `extra_state` added (e.g. layer sizes) before the network is built."""


def _drop_excluded(items: torch.Tensor, scores: torch.Tensor, exclude: Sequences, k: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove each row's excluded items and keep the best k of what is left (vectorised)."""
    rows = torch.as_tensor(np.repeat(np.arange(len(exclude)), exclude.lengths), device=items.device)
    ex = torch.as_tensor(exclude.items, device=items.device)
    n_items = int(max(items.max().item(), ex.max().item() if len(ex) else 0)) + 1
    key = items.clamp(min=0) + rows.new_tensor(n_items) * torch.arange(items.shape[0], device=items.device)[:, None]
    hit = torch.isin(key, rows * n_items + ex)
    top, pos = torch.where(hit, float("-inf"), scores).topk(k, dim=1)
    return torch.where(torch.isfinite(top), items.gather(1, pos), -1), top
