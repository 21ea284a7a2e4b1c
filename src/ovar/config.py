"""Run configuration: typed dataclasses, YAML files holding only differences, dotted overrides.

A configuration is resolved in three layers, later ones winning:

1. the defaults written in the dataclasses below;
2. a YAML file holding a nested mapping of only the keys that differ;
3. command-line overrides ``section.key=value`` (values read as the field's type).

Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key (and
the file).  The ``recipe`` section is free-form: the recipe validates it itself, e.g. with
:func:`parse_section` into its own dataclass.  :func:`save_resolved` writes the fully
resolved configuration next to a run's outputs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar, Union

import yaml

from .config_values import parse_typed, type_name
from .devices import PRECISIONS
from .errors import OvarError

T = TypeVar("T")


class ConfigError(OvarError):
    """An unknown key, a value of the wrong type or an unreadable configuration file."""


def rule(*, choices: tuple[Any, ...] | None = None, low: float | None = None, high: float | None = None,
         above: float | None = None, below: float | None = None) -> dict[str, Any]:
    """Field metadata that :func:`parse_section` checks: ``dataclasses.field(default=...,
    metadata=rule(choices=("a", "b")))``.  ``low``/``high`` are inclusive bounds, ``above``/
    ``below`` exclusive ones; every item of a tuple or list is checked; ``None`` (an unset
    optional) always passes."""
    return {"ovar_rule": {"choices": choices, "low": low, "high": high, "above": above, "below": below}}


def default_workers() -> int:
    """The default count of decoding worker processes: the usable CPU cores, at most 4
    (more rarely pays: decoding then waits on the disk and the model)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


@dataclass
class ModelConfig:
    """Which backbone to build (its frames per clip are ``data.frames``)."""

    backbone: str = "ViT-B-16"
    pretrained: str | None = "openai"
    init_from: str | None = None  # fine-tune: weights of a trained run/model file (same-shape tensors)


@dataclass
class DataConfig:
    """Where the videos and lists are, and how they are read."""

    root: str | None = None
    train_list: str | None = None
    val_list: str | None = None
    classes: str | None = None
    sampling: str = "segment"  # a rule without a frame count: the count is data.frames
    frames: int = 8  # frames per clip: the one setting; samplers and models are built from it
    batch_size: int = 8  # per process; the global batch is this x world size
    workers: int = field(default_factory=lambda: default_workers())  # decoding processes
    shot: int | None = field(default=None, metadata=rule(low=1))  # K-shot training subset
    shot_epoch: str | None = None  # "full": repeat the K-shot list to the full list's size | "subset"; None: the recipe's original
    repeat: int = 1  # the training list is read this many times per epoch
    drop_last: bool | None = None  # skip the last partial training batch; None: the recipe's original
    test_frames: str | None = None  # segment test frames: middle | tsn_offset | start; None: the recipe's original
    test_scale: str | None = None  # "SHORT/CROP" or "1=256/224,3=224/224" per view layout; None: the recipe's original
    flip: bool | None = None  # training horizontal flip; None: the recipe's original (off for SSv2-like data)
    seed: int = 0
    strict: bool = False  # an undecodable video stops the run instead of being skipped
    augment: bool = True  # false: training clips are only resized and centre-cropped, like evaluation's


@dataclass
class OptimConfig:
    """AdamW and the gradient step."""

    lr: float = field(default=1e-4, metadata=rule(above=0))
    weight_decay: float = field(default=0.05, metadata=rule(low=0))
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=rule(low=0, below=1))
    eps: float = field(default=1e-8, metadata=rule(above=0))
    backbone_lr_ratio: float = field(default=0.1, metadata=rule(low=0))
    grad_clip: float | None = field(default=1.0, metadata=rule(low=0))  # max global grad norm; None or 0: no clipping
    accumulate: int = 1  # micro-batches per optimiser step


@dataclass
class ScheduleConfig:
    """Linear warm-up, then cosine decay to ``min_lr``."""

    epochs: int = 30
    warmup_epochs: float = 5.0
    min_lr: float = field(default=0.0, metadata=rule(low=0))


@dataclass
class EvalConfig:
    """When and how to evaluate during training."""

    every_n_epochs: int = 1  # 0 disables evaluation during training
    views: str = "1x1"  # temporal clips x spatial crops
    fusion: str | None = None  # view fusion rule (ovar.eval.views); None: the recipe's own


@dataclass
class RunConfig:
    """Where outputs go and how the run behaves."""

    out_dir: str = "runs/default"
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda
    keep_last: int = 2  # epoch checkpoints kept besides the best
    resume: str | None = None  # None, "auto" (latest in out_dir) or a checkpoint path
    log_every: int = field(default=10, metadata=rule(low=1))  # optimiser steps between metrics.jsonl lines


@dataclass
class TrainConfig:
    """Mid-epoch checkpoints (for preemptible jobs) and where training metrics go besides
    ``metrics.jsonl`` (see :mod:`ovar.train.loggers`)."""

    save_every: int = 0  # optimiser steps between mid-epoch checkpoints; 0: at epoch ends only
    loggers: list[str] = field(default_factory=lambda: ["csv"])  # csv, tensorboard, wandb
    wandb_project: str = "ovar"

    def __post_init__(self) -> None:
        known = ("csv", "tensorboard", "wandb")
        for name in self.loggers:
            if name not in known:
                raise ConfigError(f"train.loggers: unknown logger {name!r} (known: {', '.join(known)})")


@dataclass
class Config:
    """A complete, resolved configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate_values(self)


_CHOICES = {"run.precision": PRECISIONS, "data.shot_epoch": (None, "full", "subset"),
            "data.test_frames": (None, "middle", "tsn_offset", "start")}
_POSITIVE = ("optim.accumulate", "data.batch_size", "schedule.epochs", "data.repeat", "data.frames")
# Keys that no longer exist, and the one that says it now.
_MOVED = {"model.frames": "data.frames"}
_NON_NEGATIVE = ("data.workers", "run.keep_last", "eval.every_n_epochs", "schedule.warmup_epochs")


def _validate_values(config: Config) -> None:
    """Range checks that a type alone cannot express."""
    for key, choices in _CHOICES.items():
        value = get_value(config, key)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(str(c) for c in choices)}, got {value!r}")
    check_ranges(config, _POSITIVE, _NON_NEGATIVE)
    _check_frames(config)


def _check_frames(config: Config) -> None:
    """``data.sampling`` may name a frame count only if it is ``data.frames``'s: one number decides."""
    from .video.sampling import parse_sampling

    data = config.data
    try:
        sampler = parse_sampling(data.sampling, frames=data.frames)
    except ValueError as exc:
        raise ConfigError(f"data.sampling: {exc}") from None
    if sampler.frames != data.frames:
        raise ConfigError(f"data.sampling: {data.sampling!r} takes {sampler.frames} frames per clip but "
                          f"data.frames is {data.frames} (frames per clip are set by data.frames alone; "
                          f"write the rule without a count, e.g. 'dense' or 'fps@30')")


def check_ranges(config: Config, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
    """ConfigError naming the first of the dotted keys ``positive`` below 1, or of
    ``non_negative`` below 0."""
    for key in positive:
        if get_value(config, key) < 1:
            raise ConfigError(f"{key}: must be at least 1, got {get_value(config, key)!r}")
    for key in non_negative:
        if get_value(config, key) < 0:
            raise ConfigError(f"{key}: must not be negative, got {get_value(config, key)!r}")


def get_value(obj: Any, dotted: str) -> Any:
    """The value at the dotted key ``dotted`` (``data.frames``) of a config."""
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# --- type checking -------------------------------------------------------------------------


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against annotation ``tp`` (lightly converted), or ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                if not str(exc).startswith(f"{key}: expected"):
                    raise  # the type fits but the value does not (a NaN float): say so
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, arg, key) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return copy.deepcopy(dict(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        # YAML 1.1 reads "1e-5" (no dot) as a string: accept what Python reads as a float.
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # no setting means anything at nan or infinity
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")


def parse_section(cls: type[T], mapping: Mapping[str, Any] | None, where: str = "") -> T:
    """An instance of dataclass ``cls`` from defaults updated by ``mapping`` (nested for
    dataclass fields); ``where`` prefixes key names in errors (e.g. ``"recipe"``)."""
    mapping = {} if mapping is None else mapping
    prefix = f"{where}." if where else ""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in mapping.items():
        if name not in fields:
            moved = _MOVED.get(f"{prefix}{name}")
            raise ConfigError(f"unknown key '{prefix}{name}'" + (f" (set {moved} instead)" if moved else ""))
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = parse_section(tp, value, f"{prefix}{name}")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    try:
        section = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None
    check_rules(section, prefix)
    return section


def check_rules(section: Any, prefix: str = "") -> None:
    """ConfigError naming the first field of dataclass ``section`` outside its :func:`rule`."""
    for f in dataclasses.fields(section):
        spec = f.metadata.get("ovar_rule")
        value = getattr(section, f.name)
        if spec is None or value is None:
            continue
        key = f"{prefix}{f.name}"
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if spec["choices"] is not None and v not in spec["choices"]:
                raise ConfigError(f"{key}: expected one of {', '.join(map(str, spec['choices']))}, got {v!r}")
            if spec["low"] is not None and v < spec["low"]:
                bound = "must not be negative" if spec["low"] == 0 else f"must be at least {spec['low']}"
                raise ConfigError(f"{key}: {bound}, got {value!r}")
            if spec["high"] is not None and v > spec["high"]:
                raise ConfigError(f"{key}: must be at most {spec['high']}, got {value!r}")
            if spec["above"] is not None and not v > spec["above"]:
                raise ConfigError(f"{key}: must be greater than {spec['above']}, got {value!r}")
            if spec["below"] is not None and not v < spec["below"]:
                raise ConfigError(f"{key}: must be less than {spec['below']}, got {value!r}")


# --- loading and overriding ----------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-5"`` -> ``(["optim", "lr"], 1e-05)``: the value is read as the
    configuration field's type (``data.root=2024`` stays the string ``"2024"``); keys of the
    free-form ``recipe`` section, and of mappings, are read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected section.key=value")
    parts = key.split(".")
    tp = field_type(parts)
    if tp is None:
        try:
            return parts, yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"override {text!r}: value is not valid YAML") from None
    try:
        return parts, parse_typed(raw, tp)
    except ValueError as exc:
        raise ConfigError(f"override {key}: {exc}") from None


def field_type(parts: list[str]) -> Any:
    """The annotation of the configuration field ``parts`` (e.g. ``["data", "root"]``), or None
    for a key without a schema (inside ``recipe`` or another mapping) or an unknown one (the
    unknown key is then reported by the schema check)."""
    cls: Any = Config
    for part in parts:
        if not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        cls = hints[part]
    origin = typing.get_origin(cls)
    if dataclasses.is_dataclass(cls) or cls is dict or origin is dict or cls is Any:
        return None
    return cls


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """A :class:`Config` from a nested mapping of differences from the defaults."""
    return parse_section(Config, data)


Override = Union[str, tuple[str, Any]]


def load_config(path: str | Path | None = None, overrides: Sequence[Override] = ()) -> Config:
    """Defaults, updated by the YAML file at ``path`` (if any), then by dotted ``overrides``:
    ``"section.key=value"`` texts (read as the field's type), or ``("section.key", value)``
    pairs of already typed values (what command-line options give; a path may be a ``Path``)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        data = _read_yaml(path)
        try:
            config_from_dict(data)  # report the file's own errors against the file
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for item in overrides:
        if isinstance(item, str):
            parts, value = parse_override(item)
        else:
            key, value = item
            parts = key.split(".")
            if isinstance(value, os.PathLike):
                value = os.fspath(value)  # configuration paths are strings
        data = _merge(data, _nest(parts, value))
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"override: {exc}") from None


def to_dict(config: Config) -> dict[str, Any]:
    """The fully resolved configuration as plain YAML-friendly data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def to_yaml(config: Config) -> str:
    """The fully resolved configuration as YAML text (loads back to an equal Config)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


def save_resolved(config: Config, run_dir: str | Path) -> Path:
    """Write ``<run_dir>/config.yaml`` with every key resolved; returns its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "config.yaml"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(to_yaml(config), encoding="utf-8")
    tmp.replace(out)
    return out
