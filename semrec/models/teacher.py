"""A frozen collaborative teacher for distillation into generative models (PRORec stage 2, UniGRec's
collaborative distillation): a trained SASRec-family model (`sasrec`, `sasrec-align`) read at the cells of the
student's training windows. Teachers are training inputs only; students never save them."""

from __future__ import annotations

import torch

from semrec.errors import ConfigError
from semrec.models.base import Recommender


def load_teacher(teacher: Recommender | None, path: str | None, n_items: int, student: str) -> Recommender:
    """The teacher given, else the model saved at `path`; frozen, in eval mode, with this catalogue's items."""
    if teacher is None:
        if not path:
            raise ConfigError(f"{student}: distillation needs a teacher (fix: --set teacher_path=RUN/model of a "
                              "sasrec or sasrec-align run on the same items, or turn the distillation weight to 0)")
        teacher = Recommender.load(path)
    if int(teacher.n_items) != n_items or not hasattr(teacher.module, "item_emb"):
        raise ConfigError(f"{student}: the teacher must be a SASRec-family model with this catalogue's {n_items} "
                          f"items (got {teacher.name} with {teacher.n_items})")
    teacher.module.eval()
    teacher.module.requires_grad_(False)
    return teacher


def left_aligned(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Start-aligned windows (B, T) of item indices (-1 = padding after the items) -> SASRec's left-padded tokens
    (item + 1, 0 = padding before the items) and each row's shift (its number of padding cells)."""
    t = items.shape[1]
    shift = t - (items >= 0).sum(1)
    src = torch.arange(t, device=items.device)[None, :] - shift[:, None]
    return torch.where(src >= 0, items.gather(1, src.clamp(min=0)) + 1, 0), shift


@torch.no_grad()
def teacher_states(teacher: Recommender, items: torch.Tensor) -> torch.Tensor:
    """(B, T, h) the teacher's state after each item of start-aligned windows (B, T), at the same cells: its
    training-time reading (left-padded, the last item at its last position), where each state is trained to
    predict the next item."""
    tokens, shift = left_aligned(items)
    h = teacher.module.to(items.device)(tokens)
    t = items.shape[1]
    back = (torch.arange(t, device=items.device)[None, :] + shift[:, None]).clamp(max=t - 1)
    return h.gather(1, back[..., None].expand(-1, -1, h.shape[-1]))


@torch.no_grad()
def teacher_items(teacher: Recommender) -> torch.Tensor:
    """(n_items, h) the teacher's item table (row = item_idx)."""
    return teacher.module.item_emb.weight[1:]


__all__ = ["left_aligned", "load_teacher", "teacher_items", "teacher_states"]
