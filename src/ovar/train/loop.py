"""The one training and evaluation engine.  It knows nothing about any method: the
:class:`~ovar.recipes.base.Recipe` builds the model, names the trainable parameters,
computes the loss and scores evaluation batches.

Read top to bottom: :func:`train` sets up (process group, seed, model, optimiser, loader,
resume), then runs epochs of :func:`_train_epoch`, evaluating every ``eval.every_n_epochs``
and checkpointing every epoch; :func:`evaluate` computes top-1/top-5 over every video
exactly once, whatever the number of processes.

Determinism: the model is initialised from ``run.seed`` (the same on every rank), the data
order and clips from ``(data.seed, epoch)``, and before each micro-batch the global python,
numpy and torch generators are seeded from ``(run.seed, epoch, step, micro-batch, rank)``.
Resuming therefore replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config, ConfigError, save_resolved, to_yaml
from ..data.dataset import derive_seed
from ..data.loader import FailureLog, VideoLoader, build_loader, gather_failures, report_failures
from ..recipes.base import Recipe
from . import distributed
from .checkpoint import CheckpointDir, load, rng_state, save_atomic, set_rng_state
from .distributed import DistContext
from .logging import MetricsLogger, progress, set_postfix
from .optim import Schedule, build_optimizer

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class RunResult:
    """What :func:`train` produced."""

    run_dir: Path
    model: nn.Module  # unwrapped, after ``finalize`` when the run completed
    epochs_completed: int
    step: int
    completed: bool  # False when stopped early by ``stop_after_epoch``
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    best: dict[str, float] | None = None  # {"epoch", "top1"} of the best evaluation


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU."""
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("run.precision: fp16 needs a GPU (use fp32 or bf16 on CPU)")
    return precision


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _split_output(out: torch.Tensor | dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """A recipe's training_step result as ``(loss, other scalars)``."""
    if isinstance(out, torch.Tensor):
        return out, {}
    if "loss" not in out:
        raise ValueError("training_step returned a dict without 'loss'")
    return out["loss"], {k: v for k, v in out.items() if k != "loss"}


def _close_loader(loader: VideoLoader) -> None:
    """Stop persistent workers now: left to interpreter exit they can outlive the process
    group and abort the process."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def _mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    torch.distributed.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def train(config: Config, recipe: Recipe, *, stop_after_epoch: int | None = None) -> RunResult:
    """Train ``recipe``'s model as ``config`` says; under torchrun, on every process.

    ``stop_after_epoch`` ends the run after that many epochs (counted from 0, including
    resumed ones) as if interrupted; ``run.resume`` continues it later.
    """
    with distributed.session(config.run.device) as ctx:
        return _train(config, recipe, ctx, stop_after_epoch)


def _train(config: Config, recipe: Recipe, ctx: DistContext, stop_after_epoch: int | None) -> RunResult:
    run_dir = Path(config.run.out_dir)
    precision = resolve_precision(config.run.precision, ctx.device)
    if ctx.is_main:
        save_resolved(config, run_dir)
    logger = MetricsLogger(run_dir, enabled=ctx.is_main)

    seed_everything(config.run.seed)  # the same initial weights on every rank
    model = recipe.build_model()
    recipe.initialize(model)  # model.init_from (fine-tuning); a resumed run overwrites it
    model = model.to(ctx.device)
    optimizer = build_optimizer(model, recipe.param_groups(model), config.optim)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
    train_set = recipe.train_dataset()
    # The originals drop the last partial batch (kept when there is no full batch at all).
    drop_last = bool(getattr(recipe, "drop_last", False)) and \
        len(train_set) >= config.data.batch_size * ctx.world_size
    loader = build_loader(train_set, config.data.batch_size, workers=config.data.workers,
                          shuffle=True, seed=config.data.seed, distributed=ctx.distributed, drop_last=drop_last)
    steps_per_epoch = math.ceil(len(loader) / config.optim.accumulate)
    schedule = Schedule(config.optim, config.schedule, steps_per_epoch)
    ckpts = CheckpointDir(run_dir / "checkpoints", config.run.keep_last)

    epoch, step, best, metrics = 0, 0, None, {}
    resume_path = _resume_path(config, ckpts)
    if resume_path is not None:
        state = load(resume_path, map_location=ctx.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        epoch, step, best, metrics = state["epoch"], state["step"], state["best"], state["metrics"]
        if state["world_size"] == ctx.world_size:
            set_rng_state(state["rng"][ctx.rank])
        if ctx.is_main:
            print(f"resumed from {resume_path} (epoch {epoch}, step {step})")

    ddp = distributed.wrap(model, ctx, find_unused_parameters=recipe.find_unused_parameters)
    try:
        while epoch < config.schedule.epochs:
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
            loader.set_epoch(epoch)
            loader.failures = FailureLog(loader.failures.action)
            started = time.perf_counter()
            step = _train_epoch(config, recipe, ddp, optimizer, scaler, schedule, loader, ctx,
                                logger, epoch, step, precision)
            logger.log("epoch", step, epoch=epoch + 1, seconds=time.perf_counter() - started)
            failures = gather_failures(loader.failures)
            if ctx.is_main:
                report_failures(failures)
            epoch += 1
            every = config.eval.every_n_epochs
            if every and (epoch % every == 0 or epoch == config.schedule.epochs):
                metrics = evaluate(config, recipe, model)
                if metrics:
                    logger.log("eval", step, epoch=epoch, **metrics)
                    if best is None or metrics["top1"] > best["top1"]:
                        best = {"epoch": epoch, "top1": metrics["top1"]}
            if ctx.is_main:
                recipe.end_epoch(model, epoch, run_dir)  # e.g. a running weight average
            rngs = distributed.all_gather_object(rng_state())
            if ctx.is_main:
                ckpts.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "best": best,
                            "metrics": metrics, "rng": rngs, "world_size": ctx.world_size,
                            "config": to_yaml(config)},
                           epoch, best["epoch"] if best else None)
            distributed.barrier()
        completed = epoch >= config.schedule.epochs
        if completed:
            if ctx.is_main:
                recipe.finalize(model, run_dir)
                save_atomic({"model": model.state_dict()}, run_dir / "final.pt")
            distributed.barrier()
    finally:
        _close_loader(loader)
        logger.close()
    return RunResult(run_dir, model, epoch, step, completed, metrics, best)


def _resume_path(config: Config, ckpts: CheckpointDir) -> Path | None:
    resume = config.run.resume
    if resume is None:
        return None
    if resume == "auto":
        return ckpts.latest()
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"run.resume: no checkpoint at {path}")
    return path


def _train_epoch(config: Config, recipe: Recipe, ddp: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, schedule: Schedule, loader: VideoLoader, ctx: DistContext,
                 logger: MetricsLogger, epoch: int, step: int, precision: str) -> int:
    """One pass over ``loader``; returns the optimiser step count after it."""
    ddp.train()
    accumulate, n = config.optim.accumulate, len(loader)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sums: dict[str, float] = {}
    count, clips, tick = 0, 0, time.perf_counter()
    bar = progress(loader, total=n, desc=f"epoch {epoch + 1}/{config.schedule.epochs}", enabled=ctx.is_main)
    group_size = accumulate
    for i, batch in enumerate(bar):
        micro = i % accumulate
        if micro == 0:
            group_size = min(accumulate, n - i)  # the epoch's last group may be shorter
        last = micro == group_size - 1
        _seed_step(config.run.seed, epoch, step, micro, ctx.rank)
        batch = _to_device(batch, ctx.device)
        # Gradients are all-reduced only on the last micro-batch of a group.
        sync = contextlib.nullcontext() if last or not ctx.distributed else ddp.no_sync()
        with sync:
            with _autocast(precision, ctx.device):
                loss, extras = _split_output(recipe.training_step(ddp, batch))
            scaler.scale(loss.float() / group_size).backward()
        for key, value in {"loss": loss, **extras}.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach() if isinstance(value, torch.Tensor) else value)
        count += 1
        clips += len(batch["label"]) * ctx.world_size
        if not last:
            continue
        lr = schedule.apply(optimizer, step)
        if config.optim.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        rate = clips / max(time.perf_counter() - tick, 1e-9)
        set_postfix(bar, loss=sums["loss"] / count, lr=lr, clips_s=round(rate, 1))
        if step % config.run.log_every == 0 or i == n - 1:
            means = _mean_over_ranks({k: v / count for k, v in sums.items()}, ctx)
            logger.log("train", step, epoch=epoch + 1, lr=lr, clips_per_s=rate, **means)
            sums, count, clips, tick = {}, 0, 0, time.perf_counter()
    return step


def _seed_step(seed: int, epoch: int, step: int, micro: int, rank: int) -> None:
    seed_everything(derive_seed(seed, epoch, step, micro, rank))


@torch.no_grad()
def evaluate(config: Config, recipe: Recipe, model: nn.Module) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of ``recipe.eval_model(model)`` on ``recipe.eval_dataset()``.

    Under torch.distributed (all ranks call it) rank ``r`` of ``W`` reads items r, r+W, ...
    and the results are gathered, so every video counts exactly once.  Videos that failed
    to decode are excluded and counted in ``num_failed``.  Returns ``{}`` without a dataset.
    """
    dataset = recipe.eval_dataset()
    if dataset is None:
        return {}
    ctx = distributed.context(config.run.device)
    emodel = recipe.eval_model(distributed.unwrap(model))
    device = next(emodel.parameters()).device
    precision = resolve_precision(config.run.precision, device)
    loader = build_loader(dataset, config.data.batch_size, workers=config.data.workers, shuffle=False,
                          seed=config.data.seed, distributed=ctx.distributed)
    was_training = emodel.training
    emodel.eval()
    hits: list[tuple[int, int, int]] = []  # (index, top-1 hit, top-5 hit)
    failed: list[int] = []
    try:
        for batch in progress(loader, total=len(loader), desc="eval", enabled=ctx.is_main):
            failed.extend(batch["failed"])
            if batch["video"] is None:
                continue
            batch = _to_device(batch, device)
            with _autocast(precision, device):
                scores, labels = recipe.evaluate_batch(emodel, batch)
            top = scores.float().topk(min(5, scores.shape[1]), dim=1).indices.cpu()
            hit = top == labels.cpu().view(-1, 1)
            hits.extend(zip(batch["index"].tolist(), hit[:, 0].int().tolist(), hit.any(1).int().tolist()))
    finally:
        _close_loader(loader)
        emodel.train(was_training)
    hits = [h for part in distributed.all_gather_object(hits) for h in part]
    failed = [f for part in distributed.all_gather_object(failed) for f in part]
    failures = gather_failures(loader.failures)
    if ctx.is_main:
        report_failures(failures)
    if len({h[0] for h in hits}) != len(hits):
        raise RuntimeError("evaluation met a video twice: the sampler must not pad")
    n = len(hits)
    return {"top1": 100.0 * sum(h[1] for h in hits) / max(n, 1),
            "top5": 100.0 * sum(h[2] for h in hits) / max(n, 1),
            "num_samples": n, "num_failed": len(failed)}
