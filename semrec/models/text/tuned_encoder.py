"""Fine-tuning the last layers of the sentence encoder inside text-seq (`tune_encoder=N`, Recformer-style).

The frozen lower layers run once per catalogue: their output for every item sentence, (n_items, tokens, width),
is kept in memory (`prefix`), so a training step runs only the last N transformer layers, and only for the few
items the step re-encodes; every other item keeps its vector from a cache the model refreshes. The tuned layers
learn at their own small learning rate although the shared training loop has one learning rate (and schedule)
for every parameter: their weights are `W0 + scale * delta`, only `delta` is trained and `scale = encoder_lr /
lr`, so an Adam step moves W by about `encoder_lr` (Adam's step does not depend on the gradient's scale).
Supports BERT-like sentence-transformers models (`auto_model.encoder.layer`), e.g. the bundled MiniLM.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from semrec.errors import ConfigError


def _load_sentence_model(path: str | None, device: str | torch.device):
    from sentence_transformers import SentenceTransformer

    from semrec.features.text import default_text_model

    return SentenceTransformer(path or default_text_model(), device=str(device))


def _layer_list(st) -> nn.ModuleList:
    auto = getattr(st[0], "auto_model", None)
    layers = getattr(getattr(auto, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"tune_encoder: {type(auto).__name__} has no BERT-like encoder.layer list (fix: use a "
                          "BERT-like sentence-transformers model such as all-MiniLM-L6-v2, or tune_encoder=0)")
    return layers


class TunedEncoder(nn.Module):
    """The last `n_layers` layers of a sentence encoder (frozen W0 + trainable delta) with its pooling."""

    def __init__(self, path: str | None, n_layers: int, max_tokens: int = 64, device: str | torch.device = "cpu"):
        super().__init__()
        st = _load_sentence_model(path, device)
        st.max_seq_length = max_tokens
        layers = _layer_list(st)
        if not 1 <= n_layers <= len(layers):
            raise ConfigError(f"tune_encoder={n_layers}: the encoder has {len(layers)} layers (fix: 1..{len(layers)})")
        self.n_frozen = len(layers) - n_layers
        self.layers = copy.deepcopy(layers[self.n_frozen:])
        self.layers.requires_grad_(False)
        self.delta = nn.ParameterDict({name.replace(".", "__"): nn.Parameter(torch.zeros_like(p))
                                       for name, p in self.layers.named_parameters()})
        self.pooling = st[1]
        self.normalize = any(type(m).__name__ == "Normalize" for m in st)
        self.attn_config = st[0].auto_model.config
        self.scale = 1.0  # encoder_lr / lr, set by the model before each use
        object.__setattr__(self, "_st", st)  # the frozen encoder: not a submodule, never saved

    @torch.no_grad()
    def prefix(self, texts: list[str], batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, tokens, width) output of the frozen layers and the (n, tokens) attention mask, for `texts`."""
        st = self._st
        feats = (getattr(st, "preprocess", None) or st.tokenize)(list(texts))  # preprocess: sentence-transformers 6
        ids, mask = feats["input_ids"], feats["attention_mask"]
        dev = next(self.layers.parameters()).device
        auto = st[0].auto_model.to(dev).eval()
        out = []
        for s in range(0, len(ids), batch_size):
            part = {k: v[s:s + batch_size].to(dev) for k, v in feats.items() if torch.is_tensor(v)}
            out.append(auto(**part, output_hidden_states=True).hidden_states[self.n_frozen])
        return torch.cat(out), mask.to(dev)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sentence vectors (n, width) from frozen-prefix states (n, tokens, width) through the tuned layers."""
        from transformers.masking_utils import create_bidirectional_mask

        keep = int(mask.sum(1).max().item()) if len(mask) else 1  # drop all-padding columns
        hidden, mask = hidden[:, :keep], mask[:, :keep]
        att = create_bidirectional_mask(config=self.attn_config, inputs_embeds=hidden, attention_mask=mask)
        params = {name: p + self.scale * self.delta[name.replace(".", "__")]
                  for name, p in self.layers.named_parameters()}
        for i, layer in enumerate(self.layers):
            own = {n.split(".", 1)[1]: p for n, p in params.items() if n.split(".", 1)[0] == str(i)}
            hidden = functional_call(layer, own, (hidden, att))
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        vec = self.pooling({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
        return F.normalize(vec, dim=-1) if self.normalize else vec

    @torch.no_grad()
    def encode(self, hidden: torch.Tensor, mask: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """`forward` over many items in eval mode (no dropout), batched."""
        was = self.training
        self.eval()
        try:
            parts = [self(hidden[s:s + batch_size], mask[s:s + batch_size]) for s in range(0, len(hidden), batch_size)]
        finally:
            self.train(was)
        return torch.cat(parts) if parts else hidden.new_zeros(0, hidden.shape[-1])


def pick_tune_items(inputs: np.ndarray, targets: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` distinct items of a batch (0-based; tokens are item + 1), the ones re-encoded this step."""
    items = np.unique(np.concatenate([inputs.ravel(), targets.ravel()]))
    items = items[items > 0] - 1
    return np.sort(rng.choice(items, size=limit, replace=False)) if len(items) > limit else items


__all__ = ["TunedEncoder", "pick_tune_items"]
