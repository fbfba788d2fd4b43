"""Image item vectors from a CLIP-style vision encoder saved locally (transformers `save_pretrained`).

A full `CLIPModel` folder uses `get_image_features`; a `CLIPVisionModelWithProjection` folder uses its
`image_embeds`; a bare `CLIPVisionModel` uses the pooled output. Preprocessing is the folder's own
`CLIPImageProcessor`. Items without an image (path None) get the zero vector.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from semrec.errors import ConfigError, DataError


@dataclass
class ImageEncoderConfig:
    model: str = ""  # local folder with config.json, weights and preprocessor_config.json
    batch_size: int = 64
    normalize: bool = True
    device: str = "cpu"
    progress: bool = True


class ImageEncoder:
    """Encode image files (or PIL images) into float32 vectors, batched with a progress bar."""

    def __init__(self, config: ImageEncoderConfig | None = None, **overrides: Any):
        from transformers import AutoConfig, CLIPImageProcessor

        self.config = dataclasses.replace(config or ImageEncoderConfig(), **overrides)
        path = Path(self.config.model)
        if not self.config.model or not (path / "config.json").exists():
            raise ConfigError(f"image model folder {str(path)!r} has no config.json (fix: pass a local CLIP "
                              "folder written by save_pretrained)")
        kind = AutoConfig.from_pretrained(path).model_type
        import transformers

        if kind == "clip":
            self.model, self._mode = transformers.CLIPModel.from_pretrained(path), "clip"
        elif kind == "clip_vision_model":
            cfg = transformers.CLIPVisionConfig.from_pretrained(path)
            arch = (cfg.architectures or [""])[0]
            if arch == "CLIPVisionModelWithProjection":
                self.model, self._mode = transformers.CLIPVisionModelWithProjection.from_pretrained(path), "proj"
            else:
                self.model, self._mode = transformers.CLIPVisionModel.from_pretrained(path), "pooled"
        else:
            raise ConfigError(f"{path}: model_type {kind!r} is not a CLIP image encoder")
        if not (path / "preprocessor_config.json").exists():
            raise ConfigError(f"{path} has no preprocessor_config.json (fix: save the CLIPImageProcessor there)")
        self.processor = CLIPImageProcessor.from_pretrained(path)
        self.model.eval().to(self.config.device)

    @torch.no_grad()
    def _embed(self, images: list) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.config.device)
        if self._mode == "clip":
            out = self.model.get_image_features(pixel_values=pixels)
            out = getattr(out, "pooler_output", out)
        elif self._mode == "proj":
            out = self.model(pixel_values=pixels).image_embeds
        else:
            out = self.model(pixel_values=pixels).pooler_output
        return out.float()

    def encode(self, images: Sequence[str | Path | Any | None]) -> np.ndarray:
        """(n, dim) float32; entries may be file paths, PIL images or None (zero vector)."""
        from PIL import Image

        present = [i for i, im in enumerate(images) if im is not None]
        chunks: list[np.ndarray] = []
        bs = self.config.batch_size
        for start in tqdm(range(0, len(present), bs), desc="images", disable=not self.config.progress):
            batch = []
            for i in present[start:start + bs]:
                im = images[i]
                if isinstance(im, (str, Path)):
                    try:
                        im = Image.open(im).convert("RGB")
                    except (OSError, ValueError) as e:
                        raise DataError(f"cannot read image ({e})", path=im, fix="fix or drop this file") from None
                batch.append(im)
            z = self._embed(batch)
            if self.config.normalize:
                z = torch.nn.functional.normalize(z, dim=-1)
            chunks.append(z.cpu().numpy())
        dim = chunks[0].shape[1] if chunks else int(self._embed([Image.new("RGB", (8, 8))]).shape[1])
        out = np.zeros((len(images), dim), dtype=np.float32)
        if present:
            out[present] = np.concatenate(chunks)
        return out
