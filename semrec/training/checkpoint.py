"""Training checkpoints: model + optimizer tensors as safetensors, loop state and RNG states as JSON.

`<dir>/last/` is rewritten atomically after every epoch (resume point); `<dir>/best/` holds the weights
of the best validation epoch. A kill -9 at any moment leaves either the previous or the new folder.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semrec.errors import DataError
from semrec.io import atomic_dir, read_json, write_json

FORMAT_VERSION = 1


def rng_state(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """JSON-able numpy/python RNG states and torch RNG states as tensors."""
    py = random.getstate()
    js = {"numpy": rng.bit_generator.state, "python": [py[0], list(py[1]), py[2]]}
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return js, tensors


def set_rng_state(rng: np.random.Generator, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    rng.bit_generator.state = js["numpy"]
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(tensors["torch_cpu"].cpu())
    cuda = [tensors[k].cpu() for k in sorted(t for t in tensors if t.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{key}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: torch.device) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        pid, key = name.split(".", 1)
        # Adam keeps `step` on the CPU unless it runs fused/capturable; everything else follows the params
        state.setdefault(int(pid), {})[key] = v if key == "step" else v.to(device)
    for name, v in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = v
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(path: str | Path, model: Any, optimizer: torch.optim.Optimizer, rng: np.random.Generator,
                    loop_state: dict[str, Any]) -> None:
    """Atomically write `path` (a folder): model.safetensors, optimizer.safetensors, rng.safetensors, state.json."""
    from safetensors.torch import save_file

    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    rng_js, rng_tensors = rng_state(rng)
    with atomic_dir(path, "checkpoint") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        write_json(tmp / "state.json", {"format_version": FORMAT_VERSION, "model": getattr(model, "name", None),
                                        "n_items": model.n_items, "loop": loop_state, "rng": rng_js,
                                        "optimizer": opt_meta})


def load_checkpoint(path: str | Path, model: Any, optimizer: torch.optim.Optimizer,
                    rng: np.random.Generator) -> dict[str, Any]:
    """Restore model, optimizer and RNG states from `path`; returns the saved loop state."""
    from safetensors.torch import load_file

    path = Path(path)
    info = read_json(path / "state.json")
    if info.get("format_version") != FORMAT_VERSION:
        raise DataError(f"unsupported checkpoint format {info.get('format_version')}", path=path / "state.json",
                        fix="delete the checkpoint folder or resume with the semrec version that wrote it")
    if info.get("model") != getattr(model, "name", None) or info.get("n_items") != model.n_items:
        raise DataError(f"checkpoint is for model {info.get('model')!r} with {info.get('n_items')} items, not "
                        f"{getattr(model, 'name', None)!r} with {model.n_items}", path=path,
                        fix="point train.checkpoint_dir at this run's own folder, or set train.resume=false")
    device = model.device
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=str(device)))
    optimizer.load_state_dict(_optimizer_state(load_file(str(path / "optimizer.safetensors")), info["optimizer"],
                                               device))
    set_rng_state(rng, info["rng"], load_file(str(path / "rng.safetensors")))
    return info["loop"]


def save_weights(path: str | Path, model: Any) -> None:
    """Atomically write only the model weights (the best-epoch snapshot)."""
    from safetensors.torch import save_file

    with atomic_dir(path, "weights") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))


def load_weights(path: str | Path, model: Any) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(Path(path) / "model.safetensors"), device=str(model.device)))
