"""The one training and evaluation engine.  It knows nothing about any method: the
:class:`~ovar.train.recipe.Recipe` builds the model, names the trainable parameters,
computes the loss and scores evaluation batches.

Read top to bottom: :func:`train` sets up (process group, seed, model, optimiser, loader,
resume), then runs epochs of :func:`_train_epoch`, evaluating every ``eval.every_n_epochs``
and checkpointing every epoch (and every ``train.save_every`` steps, and when SIGTERM or
SIGINT asks the run to stop); :func:`evaluate` computes top-1/top-5 over every video
exactly once, whatever the number of processes.

Determinism: the model is initialised from ``run.seed`` (the same on every rank), the data
order and clips from ``(data.seed, epoch)``, and before each micro-batch the global python,
numpy and torch generators are seeded from ``(run.seed, epoch, step, micro-batch, rank)``.
Resuming therefore replays exactly what an uninterrupted run would have done, from an
epoch checkpoint or from one taken mid-epoch (which also records how many micro-batches of
the epoch were trained and the sums behind the next metrics line).
"""

from __future__ import annotations

import contextlib
import logging
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
from ..devices import autocast, resolve_precision
from ..eval.scoring import batch_to_device, score_batches
from .recipe import Recipe
from . import distributed
from .checkpoint import CheckpointDir, remove_stale_temporaries, rng_state, save_atomic, set_rng_state
from .distributed import DistContext
from .loggers import build_loggers
from .logging import MetricsLogger, progress, set_postfix
from .optim import Schedule, build_optimizer
from .preempt import StopRequest
from .preflight import check_config, check_run_dir, clear_run_dir
from .resume import resume_state, warn_if_changed
from .trainable import apply as apply_trainable
from .trainable import trained_names, write_parameter_report

log = logging.getLogger(__name__)



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
    stopped: str | None = None  # the signal that stopped the run (SIGTERM/SIGINT), if one did
    checkpoint: Path | None = None  # the checkpoint written when stopped by a signal


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _split_output(out: torch.Tensor | dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """A recipe's training_step result as ``(loss, other scalars)``."""
    if isinstance(out, torch.Tensor):
        return out, {}
    if "loss" not in out:
        raise ValueError("training_step returned a dict without 'loss'")
    return out["loss"], {k: v for k, v in out.items() if k != "loss"}


def _mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    torch.distributed.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def train(config: Config, recipe: Recipe, *, stop_after_epoch: int | None = None,
          overwrite: bool = False) -> RunResult:
    """Train ``recipe``'s model as ``config`` says; under torchrun, on every process.

    Nothing is written before the whole configuration, the run folder and the checkpoint
    to resume from have been checked: a new run refuses a folder that holds one unless
    ``overwrite`` (which deletes it first).  ``stop_after_epoch`` ends the run after that
    many epochs (counted from 0, including resumed ones) as if interrupted; SIGTERM/SIGINT
    end it after the current optimiser step with a checkpoint; ``run.resume`` continues it.
    """
    check_config(config)
    with distributed.session(config.run.device) as ctx:
        return _train(config, recipe, ctx, stop_after_epoch, overwrite)


def _train(config: Config, recipe: Recipe, ctx: DistContext, stop_after_epoch: int | None,
           overwrite: bool) -> RunResult:
    run_dir = Path(config.run.out_dir)
    precision = resolve_precision(config.run.precision, ctx.device)
    ckpts = CheckpointDir(run_dir / "checkpoints", config.run.keep_last)
    # Rank 0 alone looks at the folder: another rank, started later, could see the
    # config.yaml that rank 0 has just written and refuse the run.
    problem = None
    if ctx.is_main:
        try:
            check_run_dir(run_dir, resuming=config.run.resume is not None, overwrite=overwrite)
        except ConfigError as exc:
            problem = str(exc)
    problem = distributed.broadcast_object(problem)
    if problem:
        raise ConfigError(problem)
    found = resume_state(config, ckpts)

    seed_everything(config.run.seed)  # the same initial weights on every rank
    model = recipe.build_model()
    recipe.initialize(model)  # model.init_from (fine-tuning); a resumed run overwrites it
    model = model.to(ctx.device)
    groups = recipe.param_groups(model)  # the recipe's one declaration of what trains
    apply_trainable(model, groups)  # requires_grad: exactly the declared parameters
    optimizer = build_optimizer(model, groups, config.optim)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
    train_set = recipe.train_dataset(model)
    # The originals drop the last partial batch (kept when there is no full batch at all).
    drop_last = bool(getattr(recipe, "drop_last", False)) and \
        len(train_set) >= config.data.batch_size * ctx.world_size
    loader = build_loader(train_set, config.data.batch_size, workers=config.data.workers,
                          shuffle=True, seed=config.data.seed, distributed=ctx.distributed, drop_last=drop_last)
    steps_per_epoch = math.ceil(len(loader) / config.optim.accumulate)
    schedule = Schedule(config.optim, config.schedule, steps_per_epoch)

    pos = _Position()
    if found is not None:
        path, state = found
        _restore(state, path, model, optimizer, scaler, pos, ctx)
        warn_if_changed(state, config, path)
    # Everything is checked: only now does the run folder change.
    if ctx.is_main:
        if overwrite:
            clear_run_dir(run_dir)
        if found is not None:
            for stale in [*remove_stale_temporaries(run_dir), *ckpts.remove_stale_temporaries()]:
                log.info("removed %s (left by an interrupted write)", stale)
        save_resolved(config, run_dir)
        write_parameter_report(run_dir, model, groups)
    # The model now holds the weights training starts from; rank 0 may just have cleared
    # the run folder (--overwrite), where the recipe may keep files (EVL's feature cache).
    distributed.barrier()
    recipe.prepare(model, train_set)
    logger = build_loggers(config, run_dir, enabled=ctx.is_main, resume_step=pos.step if found else None)
    if found is not None and ctx.is_main:
        log.info("resumed from %s (epoch %d, step %d)", found[0], pos.epoch, pos.step)

    ddp = distributed.wrap(model, ctx, find_unused_parameters=recipe.find_unused_parameters)
    run = _Run(config, recipe, model, ddp, optimizer, scaler, schedule, loader, ctx, logger, ckpts, precision)
    stopped: str | None = None
    try:
        with StopRequest() as stop:
            while pos.epoch < config.schedule.epochs:
                if stop_after_epoch is not None and pos.epoch >= stop_after_epoch:
                    break
                loader.set_epoch(pos.epoch)
                loader.failures = FailureLog(loader.failures.action)
                loader.shard.start = pos.batch * config.data.batch_size  # 0 unless resumed mid-epoch
                started = time.perf_counter()
                if _train_epoch(run, pos, stop):
                    stopped = stop.name
                    break
                logger.log("epoch", pos.step, epoch=pos.epoch + 1, seconds=time.perf_counter() - started)
                failures = gather_failures(loader.failures)
                if ctx.is_main:
                    report_failures(failures)
                pos.epoch, pos.batch = pos.epoch + 1, 0
                every = config.eval.every_n_epochs
                if every and (pos.epoch % every == 0 or pos.epoch == config.schedule.epochs):
                    pos.metrics = evaluate(config, recipe, model)
                    if pos.metrics:
                        logger.log("eval", pos.step, epoch=pos.epoch, **pos.metrics)
                        if pos.best is None or pos.metrics["top1"] > pos.best["top1"]:
                            pos.best = {"epoch": pos.epoch, "top1": pos.metrics["top1"]}
                if ctx.is_main:
                    recipe.end_epoch(model, pos.epoch, run_dir)  # e.g. a running weight average
                _save(run, pos, mid_epoch=False)
                if stop.agreed(ctx.device):  # asked to stop during the epoch's last step or evaluation
                    stopped = stop.name
                    break
        completed = pos.epoch >= config.schedule.epochs and stopped is None
        if completed:
            if ctx.is_main:
                recipe.finalize(model, run_dir)
                save_atomic({"model": model.state_dict()}, run_dir / "final.pt")
            distributed.barrier()
    finally:
        loader.close()
        logger.close()
    return RunResult(run_dir, model, pos.epoch, pos.step, completed, pos.metrics, pos.best, stopped,
                     ckpts.latest() if stopped else None)


@dataclass
class _Position:
    """Where a run stands; all of it goes into every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    batch: int = 0  # micro-batches of the current epoch already trained (mid-epoch checkpoints)
    best: dict[str, float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    log_sums: dict[str, float] = field(default_factory=dict)  # since the last metrics line
    log_count: int = 0


@dataclass
class _Run:
    """What one training run works with (so helpers take one argument, not twelve)."""

    config: Config
    recipe: Recipe
    model: nn.Module
    ddp: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Schedule
    loader: VideoLoader
    ctx: DistContext
    logger: MetricsLogger
    ckpts: CheckpointDir
    precision: str


def _restore(state: dict[str, Any], path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, pos: _Position, ctx: DistContext) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"run.resume: {path} does not fit this model ({first[:200]})") from None
    if "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    pos.epoch, pos.step = int(state["epoch"]), int(state["step"])
    pos.best, pos.metrics = state.get("best"), dict(state.get("metrics") or {})
    pos.batch = int(state.get("batch", 0))
    log_state = state.get("log") or {}
    pos.log_sums = {k: float(v) for k, v in (log_state.get("sums") or {}).items()}
    pos.log_count = int(log_state.get("count", 0))
    if state.get("world_size") == ctx.world_size and "rng" in state:
        set_rng_state(state["rng"][ctx.rank])


def _save(run: _Run, pos: _Position, *, mid_epoch: bool) -> None:
    """A checkpoint of everything that decides what comes next (all ranks call it)."""
    rngs = distributed.all_gather_object(rng_state())
    if run.ctx.is_main:
        state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                 "scaler": run.scaler.state_dict(), "epoch": pos.epoch, "step": pos.step, "batch": pos.batch,
                 "best": pos.best, "metrics": pos.metrics, "rng": rngs, "world_size": run.ctx.world_size,
                 "log": {"sums": dict(pos.log_sums), "count": pos.log_count}, "config": to_yaml(run.config),
                 "trainable": trained_names(run.recipe.param_groups(run.model))}
        if mid_epoch:
            run.ckpts.save_mid_epoch(state, pos.epoch, pos.step)
        else:
            run.ckpts.save(state, pos.epoch, pos.best["epoch"] if pos.best else None)
    distributed.barrier()


def _train_epoch(run: _Run, pos: _Position, stop: StopRequest) -> bool:
    """Train the rest of epoch ``pos.epoch`` (from micro-batch ``pos.batch``), advancing
    ``pos``; True when stopped by a signal (after writing a mid-epoch checkpoint)."""
    config, ctx, loader, optimizer, scaler = run.config, run.ctx, run.loader, run.optimizer, run.scaler
    run.ddp.train()
    accumulate, n, start = config.optim.accumulate, len(loader), pos.batch
    save_every = config.train.save_every
    params = [p for g in optimizer.param_groups for p in g["params"]]
    clips, tick = 0, time.perf_counter()
    bar = progress(loader, total=n - start, desc=f"epoch {pos.epoch + 1}/{config.schedule.epochs}",
                   enabled=ctx.is_main)
    group_size = accumulate
    for i, batch in enumerate(bar, start=start):
        micro = i % accumulate
        if micro == 0:
            group_size = min(accumulate, n - i)  # the epoch's last group may be shorter
        last = micro == group_size - 1
        _seed_step(config.run.seed, pos.epoch, pos.step, micro, ctx.rank)
        batch = batch_to_device(batch, ctx.device)
        # Gradients are all-reduced only on the last micro-batch of a group.
        sync = contextlib.nullcontext() if last or not ctx.distributed else run.ddp.no_sync()
        with sync:
            with autocast(run.precision, ctx.device):
                loss, extras = _split_output(run.recipe.training_step(run.ddp, batch))
            scaler.scale(loss.float() / group_size).backward()
        for key, value in {"loss": loss, **extras}.items():
            pos.log_sums[key] = pos.log_sums.get(key, 0.0) + float(value.detach() if isinstance(value, torch.Tensor)
                                                                  else value)
        pos.log_count += 1
        clips += len(batch["label"]) * ctx.world_size
        if not last:
            continue
        lr = run.schedule.apply(optimizer, pos.step)
        if config.optim.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        pos.step += 1
        pos.batch = i + 1
        rate = clips / max(time.perf_counter() - tick, 1e-9)
        set_postfix(bar, loss=pos.log_sums["loss"] / pos.log_count, lr=lr, clips_s=round(rate, 1))
        if pos.step % config.run.log_every == 0 or i == n - 1:
            means = _mean_over_ranks({k: v / pos.log_count for k, v in pos.log_sums.items()}, ctx)
            run.logger.log("train", pos.step, epoch=pos.epoch + 1, lr=lr, clips_per_s=rate, **means)
            pos.log_sums, pos.log_count, clips, tick = {}, 0, 0, time.perf_counter()
        if i == n - 1:
            break  # the epoch checkpoint follows
        stopping = stop.agreed(ctx.device)
        if stopping or (save_every and pos.step % save_every == 0):
            _save(run, pos, mid_epoch=True)
            if stopping:
                return True
    return False


def _seed_step(seed: int, epoch: int, step: int, micro: int, rank: int) -> None:
    seed_everything(derive_seed(seed, epoch, step, micro, rank))


@torch.no_grad()
def evaluate(config: Config, recipe: Recipe, model: nn.Module) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of ``recipe.eval_model(model)`` on ``recipe.eval_dataset(model)``.

    Under torch.distributed (all ranks call it) rank ``r`` of ``W`` reads items r, r+W, ...
    and the results are gathered, so every video counts exactly once.  Videos that failed
    to decode are excluded and counted in ``num_failed``.  Returns ``{}`` without a dataset.
    """
    dataset = recipe.eval_dataset(distributed.unwrap(model))
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
        for done in score_batches(loader, lambda batch: recipe.evaluate_batch(emodel, batch), device, precision,
                                  progress=ctx.is_main):
            failed.extend(done.batch["failed"])
            if done.scores is None:
                continue
            top = done.scores.topk(min(5, done.scores.shape[1]), dim=1).indices.cpu()
            hit = top == done.labels.cpu().view(-1, 1)
            hits.extend(zip(done.batch["index"].tolist(), hit[:, 0].int().tolist(), hit.any(1).int().tolist()))
    finally:
        loader.close()
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
