"""The training loop shared by every torch model: epochs, validation, early stopping, checkpoints, resume.

A model supplies `batches`, `loss` and `score` (see `semrec.models.base.TorchRecommender`); the loop owns
seeding, the optimizer, gradient clipping, progress, timing and persistence, so every model trains,
stops and resumes the same way and two runs with the same seed give the same numbers.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import SemrecError
from semrec.training.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from semrec.training.config import TrainConfig, auto_threads, metric_k
from semrec.training.distributed import (SINGLE, World, barrier, broadcast_float, data_parallel, join, rank_device,
                                         shard_batch, step_consensus)


class TrainingError(SemrecError, RuntimeError):
    """Training cannot continue (e.g. the loss became NaN)."""


@dataclass
class TrainHistory:
    """One record per epoch: loss, steps, epoch_s (training wall time), cpu_s (its process CPU seconds), eval_s,
    elapsed_s, valid metrics."""

    metric: str
    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0  # 0 = no validation ran; the final weights are the last epoch's
    best_score: float = -math.inf
    stopped_early: bool = False
    stop_reason: str | None = None  # "patience", "time_budget" or None (ran all epochs)
    resumed_from: int | None = None  # epoch of the checkpoint this run continued from

    @property
    def epochs(self) -> int:
        return len(self.records)

    @property
    def train_s(self) -> float:
        """Total training time (excluding validation), summed over epochs, including ones before a resume."""
        return float(sum(r["epoch_s"] for r in self.records))

    @property
    def train_cpu_s(self) -> float:
        """Process CPU seconds spent training (all threads; excluding validation), summed over epochs."""
        return float(sum(r.get("cpu_s", 0.0) for r in self.records))

    def budget_spent(self, clock: str) -> float:
        """Training time so far on the clock `train.budget_clock` names ("wall" or "cpu")."""
        return self.train_cpu_s if clock == "cpu" else self.train_s

    @property
    def epoch_s(self) -> float:
        """Mean training wall time per epoch."""
        return self.train_s / max(self.epochs, 1)

    @property
    def best_metrics(self) -> dict[str, float]:
        for r in self.records:
            if r["epoch"] == self.best_epoch:
                return r.get("valid", {})
        return {}

    def time_to_target(self, target: float, metric: str | None = None) -> float | None:
        """Elapsed seconds (training + validation) until the validation metric first reached `target`."""
        metric = metric or self.metric
        for r in self.records:
            if r.get("valid", {}).get(metric, -math.inf) >= target:
                return float(r["elapsed_s"])
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d |= {"train_s": round(self.train_s, 3), "train_cpu_s": round(self.train_cpu_s, 3),
              "epoch_s": round(self.epoch_s, 3), "epochs": self.epochs}
        if not math.isfinite(self.best_score):
            d["best_score"] = None
        return d


def seed_everything(seed: int) -> None:
    """Seed python, numpy's legacy global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def log_jsonl(path: str | None, record: dict[str, Any]) -> None:
    """Append one JSON line to `path` (no-op when None)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")


def _validate(model: Any, valid: EvalSet, cfg: TrainConfig, epoch: int, world: World = SINGLE
              ) -> tuple[dict[str, float], float]:
    from semrec.evaluation import evaluate

    k = metric_k(cfg.metric)
    ks = tuple(sorted({5, 10, 20} | ({k} if k else set())))
    t0 = time.perf_counter()
    res = evaluate(model, valid, ks=ks, batch_size=cfg.eval_batch_size, exclude_history=cfg.eval_exclude_history,
                   name=f"valid epoch {epoch}", world=world)
    return {m: round(v, 6) for m, v in res.summary().items()}, time.perf_counter() - t0


def _last_checkpoint(ckpt: Path) -> Path | None:
    """`last/`, or the previous copy a kill between the two renames of an atomic swap left as `.last.old/`."""
    for p in (ckpt / "last", ckpt / ".last.old"):
        if (p / "state.json").exists():
            return p
    return None


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, elapsed_s: float) -> float:
    """Linear warm-up, then constant or cosine decay; a time budget counts as the end of training, so a
    time-boxed run still anneals to zero."""
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
    if cfg.lr_schedule == "cosine":
        done = step / max(total_steps, 1)
        if cfg.max_train_seconds:
            done = max(done, elapsed_s / cfg.max_train_seconds)
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    return lr


def _first_batch(model: Any, train: Sequences, batch_size: int, world: World, shared: frozenset[str],
                 device: torch.device) -> dict[str, Any]:
    """This rank's part of a batch drawn with a throw-away generator (the training draws stay untouched)."""
    for batch in model.batches(train, batch_size, np.random.default_rng(0)):
        if (part := shard_batch(batch, world, shared)) is not None:
            return {k: v.to(device) if torch.is_tensor(v) else v for k, v in part.items()}
    raise TrainingError(f"no training batch has {world.size} rows, one per process (fix: fewer processes)")


def train(model: Any, train: Sequences, valid: EvalSet | None = None, config: TrainConfig | None = None
          ) -> TrainHistory:
    """Train a `TorchRecommender` in place and return its history; the best validation epoch's weights
    are restored at the end (the last epoch's when `valid` is None).

    Under torchrun (WORLD_SIZE > 1) each process trains on its slice of every global batch of
    `batch_size` rows; see semrec.training.distributed."""
    cfg = config or model.train_config
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads or auto_threads())
    world = join(cfg.device)
    seed_everything(cfg.seed)
    if model.module is None:
        model.build(rank_device(cfg.device, world))
    else:
        model.to(rank_device(cfg.device, world))
    device = model.device
    optimizer = make_optimizer(model.module.parameters(), cfg)
    rng = np.random.default_rng(cfg.seed)
    hist = TrainHistory(metric=cfg.metric)
    bad_evals, elapsed, start_epoch, step = 0, 0.0, 1, 0
    ckpt = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    log_path = cfg.log_path if world.is_main else None
    best_in_memory: dict[str, torch.Tensor] | None = None

    last = _last_checkpoint(ckpt) if cfg.resume and ckpt is not None else None
    if last is not None:
        loop = load_checkpoint(last, model, optimizer, rng)
        hist = TrainHistory(metric=cfg.metric, records=loop["records"], best_epoch=loop["best_epoch"],
                            best_score=-math.inf if loop["best_score"] is None else loop["best_score"],
                            stopped_early=loop["stopped_early"], stop_reason=loop.get("stop_reason"),
                            resumed_from=loop["epoch"])
        bad_evals, elapsed, start_epoch = loop["bad_evals"], loop["elapsed_s"], loop["epoch"] + 1
        step = loop.get("step", 0)
        log_jsonl(log_path, {"event": "resumed", "epoch": loop["epoch"], "world_size": world.size})
        if hist.stop_reason or hist.stopped_early:
            start_epoch = cfg.epochs + 1

    compute_loss = model.loss
    shared_keys = model.shared_batch_keys()
    if world.active:  # after a resume, so rank 0's restored weights are the ones broadcast
        torch.manual_seed(cfg.seed + 7919 * world.rank + start_epoch)  # own dropout masks per rank
        compute_loss = data_parallel(model.module, model.loss,
                                     _first_batch(model, train, cfg.batch_size, world, shared_keys, device))
    n_batches = model.num_batches(train, cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.module.train()
        t0, c0 = time.perf_counter(), time.process_time()
        clock = time.process_time if cfg.budget_clock == "cpu" else time.perf_counter
        spent, started = hist.budget_spent(cfg.budget_clock), clock()
        total, steps = 0.0, 0
        bar = tqdm(model.batches(train, cfg.batch_size, rng), total=n_batches, desc=f"epoch {epoch}/{cfg.epochs}",
                   unit="batch", disable=not (cfg.progress and world.is_main), leave=False, dynamic_ncols=True)
        for batch in bar:
            if world.active and (batch := shard_batch(batch, world, shared_keys)) is None:
                continue
            if cfg.warmup_steps or cfg.lr_schedule != "constant":
                done = spent + clock() - started
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, step, (n_batches or 1) * cfg.epochs, done)
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss = compute_loss(batch)
            over = bool(cfg.max_train_seconds) and spent + clock() - started >= cfg.max_train_seconds
            value, over = step_consensus(loss, over, world)
            if not math.isfinite(value):
                raise TrainingError(f"loss is {value} at epoch {epoch}, step {steps + 1} (fix: lower train.lr, "
                                    "set train.max_grad_norm, or check the model's loss for log(0))")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.module.parameters(), cfg.max_grad_norm)
            optimizer.step()
            total += value
            steps += 1
            step += 1
            if steps % 20 == 0:
                bar.set_postfix(loss=f"{total / steps:.4f}")
            if over:
                hist.stop_reason = "time_budget"
                break
        bar.close()
        budget_used = (spent + clock() - started) / cfg.max_train_seconds if cfg.max_train_seconds else 0.0
        epoch_s = time.perf_counter() - t0
        rec: dict[str, Any] = {"epoch": epoch, "loss": total / max(steps, 1), "steps": steps,
                               "epoch_s": round(epoch_s, 4), "cpu_s": round(time.process_time() - c0, 4),
                               "lr": optimizer.param_groups[0]["lr"]}
        eval_s = 0.0
        # the epoch a time budget ends is always validated: with a cosine schedule it is often the best one
        last = epoch == cfg.epochs or hist.stop_reason == "time_budget"
        if valid is not None and (epoch % cfg.eval_every == 0 or last):
            metrics, eval_s = _validate(model, valid, cfg, epoch, world)
            score = broadcast_float(metrics[cfg.metric], world)  # rank 0 decides; all ranks follow
            rec |= {"valid": metrics, "eval_s": round(eval_s, 4)}
            if score > hist.best_score:
                hist.best_score, hist.best_epoch, bad_evals = score, epoch, 0
                if ckpt is not None:
                    if world.is_main:
                        save_weights(ckpt / "best", model)
                else:
                    best_in_memory = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif not (cfg.lr_schedule == "cosine" and cfg.max_train_seconds) or budget_used >= 0.5:
                # under a time-budgeted cosine schedule the rate is still high in the budget's first half,
                # where a plateau says little: patience counts from the half-way point on
                bad_evals += 1
        elapsed += epoch_s + eval_s
        rec["elapsed_s"] = round(elapsed, 4)
        rec["best_epoch"] = hist.best_epoch
        hist.records.append(rec)
        if cfg.patience and bad_evals >= cfg.patience and epoch < cfg.epochs and not hist.stop_reason:
            hist.stop_reason = "patience"
        hist.stopped_early = hist.stop_reason is not None and epoch < cfg.epochs
        if ckpt is not None and world.is_main:
            save_checkpoint(ckpt / "last", model, optimizer, rng,
                            {"epoch": epoch, "step": step, "records": hist.records, "best_epoch": hist.best_epoch,
                             "best_score": hist.best_score if math.isfinite(hist.best_score) else None,
                             "bad_evals": bad_evals, "elapsed_s": elapsed, "stopped_early": hist.stopped_early,
                             "stop_reason": hist.stop_reason, "config": asdict(cfg), "world_size": world.size})
        log_jsonl(log_path, rec)
        if cfg.progress and world.is_main:
            shown = f", valid {cfg.metric} {rec['valid'][cfg.metric]:.4f}" if "valid" in rec else ""
            tqdm.write(f"epoch {epoch}: loss {rec['loss']:.4f}, {epoch_s:.1f}s{shown}")
        if hist.stop_reason:
            log_jsonl(log_path, {"event": "stop", "reason": hist.stop_reason, "epoch": epoch,
                                     "best_epoch": hist.best_epoch})
            break

    barrier(world)  # rank 0's files are complete before anyone reads them
    if hist.best_epoch and hist.best_epoch != (hist.records[-1]["epoch"] if hist.records else 0):
        if ckpt is not None:
            load_weights(ckpt / "best", model)
        elif best_in_memory is not None:
            model.load_state_dict(best_in_memory)
    model.module.eval()
    return hist
