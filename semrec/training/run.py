"""A training run as a folder: build a model from a name + config, fit it, evaluate valid and test, write it all.

```
RUN_DIR/config.json            model name, resolved model config, data and split provenance, protocol
RUN_DIR/dataset_manifest.json  copy of the dataset's manifest
RUN_DIR/split/                 the exact split used (split.npz + split.json)
RUN_DIR/model/                 Recommender.save() (config.json + model.safetensors)
RUN_DIR/metrics.json           valid + test metrics, exclude_history, protocol, timings
RUN_DIR/eval/{valid,test}/     EvalResult (per-row ranks for paired comparisons)
RUN_DIR/train_log.jsonl        one JSON line per epoch (torch models) or per fit
RUN_DIR/checkpoints/           last/ and best/ (torch models; `--resume` continues from last/)
```
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from semrec.data.dataset import Dataset
from semrec.data.splits import SPLITS, Split
from semrec.errors import ConfigError, DataError
from semrec.evaluation import EvalResult, evaluate
from semrec.io import check_output, commit_partial, marker_info, open_partial, partial_dir, read_json, write_json
from semrec.training.config import apply_overrides, check_device
from semrec.training.distributed import World, barrier, join
from semrec.training.loop import log_jsonl

DEFAULT_KS = (5, 10, 20)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping of model options (nested `train:` allowed); errors name the file and line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found" if not path.exists() else f"{path} is a folder, "
                          "expected a YAML or JSON config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError("not a text file (binary content); expected a YAML or JSON mapping of options", path=path,
                        fix="pass a .yaml or .json file such as `epochs: 5`") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        raise DataError(f"invalid YAML: {e.problem}", path=path, line=mark.line + 1 if mark else None,
                        fix="repair the syntax at that line") from None
    except yaml.YAMLError as e:
        raise DataError(f"invalid YAML: {e}", path=path, fix="repair the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError("expected a mapping of option: value at the top level", path=path, line=1)
    return data


def resolve_config(name: str, config_file: str | Path | None = None,
                   overrides: list[str] | dict[str, Any] | None = None, device: str | None = None) -> Any:
    """Model `name`'s Config: defaults <- config file <- overrides (<- device), every value type-checked."""
    from semrec.models import get_model_class

    cfg = get_model_class(name).Config()
    if config_file is not None:
        cfg = apply_overrides(cfg, read_config_file(config_file))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    if device is not None:
        names = {f.name for f in dataclasses.fields(cfg)}
        if "train" in names:
            cfg = apply_overrides(cfg, {"train.device": device})
        elif "device" in names:
            cfg = apply_overrides(cfg, {"device": device})
    return cfg


def build_model(name: str, n_items: int, config_file: str | Path | None = None,
                overrides: list[str] | dict[str, Any] | None = None, device: str | None = None) -> Any:
    """Instantiate registered model `name` with defaults <- config file <- overrides (<- device)."""
    from semrec.models import get_model_class

    return get_model_class(name)(n_items, resolve_config(name, config_file, overrides, device))


def preflight(name: str, cfg: Any) -> None:
    """Refuse, before any data is read or anything written, options that would only fail later: a code table
    model `name` needs but was not given, or an input path (any `*_path` option) that does not exist."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for owner in (cfg, getattr(cfg, "train", None)):
        if owner is not None and isinstance(getattr(owner, "device", None), str):
            check_device(owner.device)
    if "codes_path" in names and cfg.codes_path is None:
        raise ConfigError(f"{name} needs a semantic-ID code table (fix: --set codes_path=DIR, a folder "
                          "written by `semrec ids fit`)")
    for field_name in sorted(n for n in names if n.endswith("_path")):
        value = getattr(cfg, field_name)
        if isinstance(value, str) and value and not Path(value).exists():
            raise ConfigError(f"option {field_name!r}: {value} does not exist "
                              f"(fix: --set {field_name}=EXISTING_PATH)")


def prepare_model(model: Any, data: str | Path, init: str | Path | None = None) -> dict[str, Any]:
    """Hooks between building a model and training it: a model with an empty `dataset` option (and no
    `vectors_path`) reads its item text from the `--data` folder; `--init RUN_DIR` copies a pretrained run's
    weights (models with `init_from`, e.g. text-seq). Returns provenance for config.json."""
    names = {f.name for f in dataclasses.fields(model.config)}
    if "dataset" in names and not model.config.dataset and not getattr(model.config, "vectors_path", None):
        model.config = dataclasses.replace(model.config, dataset=str(data))
    if init is None:
        return {}
    if not hasattr(model, "init_from"):
        raise ConfigError(f"--init: {model.name} cannot start from a pretrained run (only text-seq can)")
    carried = model.init_from(str(init))
    return {"init": str(init), "init_carried": len(carried)}


def check_eval_target(target: Path, ks: tuple[int, ...], overwrite: bool) -> None:
    """Refuse to replace an earlier evaluation computed with other cut-offs unless `overwrite` says so."""
    from semrec.errors import OutputError

    info = target / "result.json"
    if not info.exists() or overwrite:
        return
    old = read_json(info)
    old_ks = tuple(old.get("ks", ()))
    if old_ks and old_ks != tuple(ks):
        raise OutputError(f"{target} holds an evaluation with cut-offs {list(old_ks)}, not {list(ks)}",
                          fix="pass --overwrite to replace it, or use the same --ks")


def make_split(dataset: Dataset, split_dir: str | Path | None = None, kind: str = "leave-one-out",
               options: dict[str, Any] | None = None) -> Split:
    """Load a saved split, or compute one of SPLITS from the dataset."""
    if split_dir is not None:
        sp = Split.load(split_dir)
        if sp.n_items != dataset.n_items:
            raise DataError(f"split has {sp.n_items} items but the dataset has {dataset.n_items}", path=split_dir,
                            fix="use a split made from this dataset (semrec data split)")
        return sp
    if kind not in SPLITS:
        raise ConfigError(f"unknown split kind {kind!r}; choose one of {list(SPLITS)}")
    return SPLITS[kind](dataset, **(options or {}))


def train_run(model: Any, split: Split, out: str | Path, *, dataset: Dataset | None = None,
              ks: tuple[int, ...] = DEFAULT_KS, exclude_history: bool = False, resume: bool = False,
              overwrite: bool = False, provenance: dict[str, Any] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Fit `model` on `split.train` (validating on `split.valid`), evaluate valid + test, write RUN_DIR `out`.

    The run is built in `.NAME.partial` beside `out` and renamed onto `out` only when complete, so `out` is
    never half-written. An existing run at `out` is replaced only with `overwrite` (or `resume`); a killed run
    leaves its partial folder, which `resume` continues and a fresh run removes. Returns metrics.json's content.
    """
    out = Path(out)
    world = join(model.train_config.device) if hasattr(model, "train_config") else join("cpu")
    if world.active and not hasattr(model, "train_config"):
        raise ConfigError(f"{model.name} is not trained by semrec.training, so it cannot train on "
                          f"{world.size} processes (fix: run it without torchrun / --nproc)")
    if world.is_main:  # rank 0 alone touches the run folder; the others train and evaluate with it
        check_output(out, "run", overwrite or resume)
        part = open_partial(out, "run", resume=resume)
    else:
        part = partial_dir(out)
    barrier(world)
    try:
        metrics = _train_into(model, split, part, out, dataset=dataset, ks=ks, exclude_history=exclude_history,
                              resume=resume, provenance=provenance, progress=progress and world.is_main,
                              world=world)
    except BaseException:
        if world.is_main and not (part / "checkpoints" / "last").exists():  # nothing to resume: leave nothing
            shutil.rmtree(part, ignore_errors=True)
        raise
    if world.is_main:
        commit_partial(out, "run", overwrite or resume)
    return metrics


def _train_into(model: Any, split: Split, part: Path, out: Path, *, dataset: Dataset | None, ks: tuple[int, ...],
                exclude_history: bool, resume: bool, provenance: dict[str, Any] | None,
                progress: bool, world: World) -> dict[str, Any]:
    """The run itself, written into the partial folder `part` of the final run folder `out` (by rank 0)."""
    log_path = part / "train_log.jsonl"
    writes = world.is_main
    if not resume and writes:  # a fresh run never inherits the log or checkpoints of an earlier run
        log_path.unlink(missing_ok=True)
        shutil.rmtree(part / "checkpoints", ignore_errors=True)
    user_log = hasattr(model, "train_config") and model.train_config.log_path is not None
    if hasattr(model, "train_config"):
        overrides: dict[str, Any] = {"train.checkpoint_dir": str(part / "checkpoints"), "train.resume": resume}
        if not user_log:
            overrides["train.log_path"] = str(log_path)
        model.config = apply_overrides(model.config, overrides)
        log_path = Path(model.config.train.log_path)
    protocol = {"split": split.kind, "split_options": split.options, "ks": list(ks),
                "exclude_history": exclude_history, "full_ranking": True,
                "valid_rows": len(split.valid), "test_rows": len(split.test)}
    config = {"model": model.name, "n_items": model.n_items, "config": dataclasses.asdict(model.config),
              "protocol": protocol, "command": " ".join(["semrec", *sys.argv[1:]]) if sys.argv else None,
              **(provenance or {})}
    if world.active:
        config["world_size"] = world.size
    if writes:
        if dataset is not None:
            config |= {"dataset_fingerprint": dataset.fingerprint(), "item_fingerprint": dataset.item_fingerprint()}
            write_json(part / "dataset_manifest.json", dataset.manifest())
        write_json(part / "config.json", _final_paths(config, part, out))
        split.save(part / "split")

    t0 = time.perf_counter()
    model.fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    history = getattr(model, "history", None)
    if history is None and writes:
        log_jsonl(str(log_path), {"event": "fit", "fit_s": round(fit_s, 4)})
    if hasattr(model, "train_config"):  # the saved config names the final folder, not the partial one
        final = {"train.checkpoint_dir": str(out / "checkpoints")}
        if not user_log:
            final["train.log_path"] = str(out / "train_log.jsonl")
        model.config = apply_overrides(model.config, final | {"train.resume": False})
    if writes:
        model.save(part / "model")

    metrics: dict[str, Any] = {"model": model.name, "exclude_history": exclude_history, "protocol": protocol}
    timing: dict[str, float] = {"fit_s": round(fit_s, 3)}
    for name in ("valid", "test"):
        res = evaluate(model, getattr(split, name), ks=ks, exclude_history=exclude_history, train=split.train,
                       progress=progress, name=name, world=world)
        if writes:
            res.save(part / "eval" / eval_name(name, exclude_history))
        metrics[name] = res.metrics
        timing[f"{name}_eval_s"] = res.settings["eval_s"]
    if history is not None:
        if writes:
            write_json(part / "history.json", history.to_dict())
        timing |= {"train_s": round(history.train_s, 3), "epoch_s": round(history.epoch_s, 3)}
        metrics |= {"best_epoch": history.best_epoch, "epochs": history.epochs,
                    "stop_reason": getattr(history, "stop_reason", None)}
    metrics["timing"] = timing
    if writes:
        write_json(part / "metrics.json", metrics)
    return metrics


def _final_paths(obj: Any, part: Path, out: Path) -> Any:
    """`obj` with every string path inside the partial folder rewritten to the final run folder."""
    if isinstance(obj, dict):
        return {k: _final_paths(v, part, out) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_final_paths(v, part, out) for v in obj]
    if isinstance(obj, str) and obj.startswith(str(part)):
        return str(out) + obj[len(str(part)):]
    return obj


def eval_name(split: str, exclude_history: bool) -> str:
    """Folder name of an evaluation inside RUN_DIR/eval/."""
    return f"{split}-exclude-history" if exclude_history else split


def load_run(path: str | Path, device: str = "cpu") -> tuple[Any, Split, dict[str, Any]]:
    """(model, split, config) of a run folder written by `train_run`."""
    from semrec.models import Recommender

    path = check_run_dir(path)
    return Recommender.load(path / "model", device=device), Split.load(path / "split"), read_json(path / "config.json")


def check_run_dir(path: str | Path) -> Path:
    """`path` as a complete run folder, or a DataError that says what it is instead and what to do."""
    path = Path(path)
    fix = "create one with `semrec train MODEL --data DATASET --out RUN_DIR`"
    if not path.exists():
        if partial_dir(path).exists():
            raise DataError("training of this run was interrupted and never finished", path=path,
                            fix="continue it with the same `semrec train ... --out RUN_DIR --resume` command")
        raise DataError("run folder not found", path=path, fix=fix)
    if marker_info(path).get("complete") is False:
        raise DataError("this run is incomplete (its training was interrupted)", path=path,
                        fix="continue it with `semrec train ... --resume`, or train it again")
    if not (path / "model" / "config.json").exists():
        raise DataError("not a semrec run folder (no model/config.json)", path=path, fix=fix)
    return path


def load_eval(path: str | Path, split: str = "test", exclude_history: bool = False) -> EvalResult:
    """An EvalResult from a run folder (RUN_DIR/eval/<split>) or from an EvalResult folder itself."""
    path = Path(path)
    if (path / "result.json").exists():
        return EvalResult.load(path)
    target = path / "eval" / eval_name(split, exclude_history)
    if not (target / "result.json").exists():
        flag = " --exclude-history" if exclude_history else ""
        raise DataError(f"no {eval_name(split, exclude_history)} evaluation in this run", path=path,
                        fix=f"run `semrec evaluate {path} --split {split}{flag}` first")
    return EvalResult.load(target)
