"""`TrainConfig` (the training loop's options with defaults) and helpers for nested config dataclasses.

Every torch model's `Config` holds a `train: TrainConfig` field, so one JSON/YAML file or a list of
`key=value` overrides (`epochs=50`, `train.lr=1e-3`, `hidden=64`) describes a whole run.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from semrec.errors import ConfigError

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")
BUDGET_CLOCKS = ("wall", "cpu")
SIGNED_INT_FIELDS = frozenset({"seed", "text_key_offset"})  # int options that may be negative


@dataclass
class TrainConfig:
    """Options of `semrec.training.train`; the defaults suit a small sequential model on CPU."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw
    max_grad_norm: float | None = None  # clip the global gradient norm; None = no clipping
    warmup_steps: int = 0  # linear learning-rate warmup over the first N optimizer steps
    lr_schedule: str = "constant"  # constant | cosine (to 0 over `epochs`, or over max_train_seconds if sooner)
    max_train_seconds: float | None = None  # stop once this much training time (all epochs) is spent
    budget_clock: str = "wall"  # wall | cpu: max_train_seconds counts wall time, or this process's CPU seconds
    #                             (all threads), which other jobs on a shared machine do not eat into
    patience: int = 5  # evaluations without improvement before stopping; 0 = never stop early
    eval_every: int = 1  # validate every N epochs (and always after the last one)
    metric: str = "ndcg@10"  # validation metric that picks the best epoch (higher is better)
    eval_batch_size: int = 1024
    eval_exclude_history: bool = False  # validation protocol: mask history items (False = DESIGN.md default)
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None  # torch intra-op threads; None = torch's default, 0 = auto_threads()
    checkpoint_dir: str | None = None  # write last/ (every epoch) and best/ here; None = keep best in memory
    resume: bool = False  # continue from checkpoint_dir/last when it exists
    log_path: str | None = None  # JSON lines, one record per epoch
    progress: bool = True  # tqdm bars on stderr

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer={self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.budget_clock not in BUDGET_CLOCKS:
            raise ConfigError(f"train.budget_clock={self.budget_clock!r}; choose one of {BUDGET_CLOCKS}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"train.lr_schedule={self.lr_schedule!r}; choose one of {LR_SCHEDULES}")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ConfigError(f"train.patience must be >= 0 (0 = never stop early), got {self.patience}")
        if self.warmup_steps < 0 or (self.max_train_seconds is not None and self.max_train_seconds <= 0):
            raise ConfigError("train.warmup_steps must be >= 0 and train.max_train_seconds > 0 (or null)")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        metric_k(self.metric)
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("train.resume=true needs train.checkpoint_dir (the folder holding last/)")


def check_device(device: str | None) -> str | None:
    """`device` if torch can use it here, else a ConfigError saying which devices exist."""
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device name; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return device
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"--device {device}: this torch build sees no CUDA GPU (fix: --device cpu)")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"--device {device}: only {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return device
    if dev.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return device
    raise ConfigError(f"--device {device}: not available on this machine (fix: --device cpu)")


def metric_k(metric: str) -> int | None:
    """The cut-off of a metric name ('ndcg@10' -> 10, 'mrr' -> None); raises ConfigError for unknown names."""
    name, _, k = metric.partition("@")
    if name not in ("recall", "ndcg", "mrr") or (k and not k.isdigit()) or (name != "mrr" and not k):
        raise ConfigError(f"unknown metric {metric!r}; use recall@K, ndcg@K, mrr@K or mrr (e.g. ndcg@10)")
    return int(k) if k else None


def auto_threads() -> int:
    """torch CPU threads for a shared machine: the cores not already busy (at least 1).

    On a 2-core machine with a load average above 2, two threads per process oversubscribe the cores and
    one step can run ~8x slower than with one thread (measured with SASRec while other jobs ran).
    """
    import os

    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


# ---------------------------------------------------------------------------- nested dataclass helpers
def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if args and type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or null"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def check_value(value: Any, tp: Any, key: str) -> Any:
    """`value` converted to the field type `tp` (int -> float, list -> tuple), or a ConfigError naming `key`,
    the expected type and the value; numbers must be finite and counts (int fields) non-negative."""
    import math

    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        tp = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
        args, origin = typing.get_args(tp), typing.get_origin(tp)
    bad = ConfigError(f"option {key!r}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is Any or isinstance(tp, str):
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise bad
        if value < 0 and key.rsplit(".", 1)[-1] not in SIGNED_INT_FIELDS:
            raise ConfigError(f"option {key!r}: must be >= 0, got {value}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ConfigError(f"option {key!r}: must be a finite number, got {value}")
        if "dropout" in key and not 0.0 <= value < 1.0:
            raise ConfigError(f"option {key!r}: a dropout rate must be in [0, 1), got {value}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `--set name=2024` parses as a number
        if not isinstance(value, str):
            raise bad
        return value
    if origin is typing.Literal:
        if value not in args:
            raise bad
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad
        inner = args[0] if args else Any
        items = [check_value(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return value
    if origin is typing.Union:
        for a in args:
            try:
                return check_value(value, a, key)
            except ConfigError:
                continue
        raise bad
    return value


def _dataclass_type(tp: Any) -> type | None:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):  # Optional[Sub]
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None


def config_from_dict(cls: type, data: dict[str, Any], *, strict: bool = False, where: str = "config") -> Any:
    """Build dataclass `cls` from a (JSON/YAML) dict, recursing into nested dataclass fields.

    Unknown keys raise ConfigError when `strict`, else are ignored (old run folders keep loading).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    types = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown and strict:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            continue
        sub = _dataclass_type(types.get(key))
        if sub is not None and isinstance(value, dict):
            value = config_from_dict(sub, value, strict=strict, where=f"{where}.{key}")
        elif strict:
            value = check_value(value, types.get(key, Any), f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"none": None, "null": None, "true": True, "false": False}.get(text.lower(), text)


def apply_overrides(config: Any, overrides: dict[str, Any] | list[str]) -> Any:
    """A copy of `config` with `key=value` overrides applied; values given as strings are parsed as JSON.

    Dotted keys reach nested dataclasses (`train.lr=3e-4`). A plain key that is not a field of the
    model config but is one of its `train` config is applied there (`epochs=5` == `train.epochs=5`).
    """
    if isinstance(overrides, list):
        pairs: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set {item!r} is not key=value (e.g. --set train.epochs=5)")
            key, value = item.split("=", 1)
            pairs[key.strip().replace("-", "_")] = _parse_value(value.strip())
        overrides = pairs
    for key, value in overrides.items():
        config = _set(config, key.split("."), value, key)
    return config


def _set(config: Any, path: list[str], value: Any, full: str) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    head = path[0]
    if head not in names:
        sub = getattr(config, "train", None)
        if len(path) == 1 and dataclasses.is_dataclass(sub) and head in {f.name for f in dataclasses.fields(sub)}:
            return dataclasses.replace(config, train=_set(sub, path, value, full))
        raise ConfigError(f"unknown option {full!r}; known: {sorted(names)}")
    if len(path) > 1:
        sub = getattr(config, head)
        if not dataclasses.is_dataclass(sub):
            raise ConfigError(f"option {full!r}: {head!r} has no sub-options")
        return dataclasses.replace(config, **{head: _set(sub, path[1:], value, full)})
    current = getattr(config, head)
    if dataclasses.is_dataclass(current) and isinstance(value, type(current)):  # a whole config object (Python API)
        return dataclasses.replace(config, **{head: value})
    if dataclasses.is_dataclass(current) and not isinstance(value, dict):
        sub = sorted(f.name for f in dataclasses.fields(current))
        raise ConfigError(f"option {full!r} is a group of options; set one of them, e.g. {full}.{sub[0]}=... "
                          f"(known: {sub})")
    if dataclasses.is_dataclass(current) and isinstance(value, dict):  # merge, keeping the model's own defaults
        for key, sub_value in value.items():
            current = _set(current, [key], sub_value, f"{full}.{key}")
        return dataclasses.replace(config, **{head: current})
    value = check_value(value, _field_types(type(config)).get(head, Any), full)
    try:
        return dataclasses.replace(config, **{head: value})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"option {full!r}: {e}") from None
