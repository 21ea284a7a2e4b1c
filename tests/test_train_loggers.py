"""`train.loggers`: csv, TensorBoard and W&B (offline) receive the same values at the same
steps as metrics.jsonl, from a real (toy) training run through the command line."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from ovar.cli import main
from ovar.config import ConfigError, load_config

TOY = ["--recipe", "toy_recipe:toy", "data.workers=0", "data.batch_size=8", "schedule.epochs=2",
       "schedule.warmup_epochs=1", "optim.lr=0.05", "run.device=cpu", "run.log_every=3"]


def _jsonl(run: Path) -> dict[tuple[int, str, str], float]:
    """(step, tag, name) -> value of every numeric value in metrics.jsonl."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for name, value in record.items():
            if name not in ("kind", "step", "time") and isinstance(value, (int, float)):
                out[(record["step"], record["kind"], name)] = float(value)
    return out


def _train(tmp_path, capsys, loggers: str) -> Path:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TOY, f"train.loggers={loggers}"]) == 0
    capsys.readouterr()
    return run


def test_csv_matches_metrics_jsonl(tmp_path, capsys):
    run = _train(tmp_path, capsys, "[csv]")
    expected = _jsonl(run)
    with open(run / "metrics.csv", newline="") as f:
        rows = {(int(r["step"]), r["kind"], r["name"]): float(r["value"]) for r in csv.DictReader(f)}
    assert rows == pytest.approx(expected)
    names = {(kind, name) for _, kind, name in rows}
    # learning rate, loss, throughput and evaluation metrics are all there
    assert {("train", "lr"), ("train", "loss"), ("train", "clips_per_s"), ("eval", "top1"), ("eval", "top5")} <= names
    # 8 steps an epoch: logged at every third global step and at each epoch's end
    assert sorted({s for s, kind, _ in rows if kind == "train"}) == [3, 6, 8, 9, 12, 15, 16]
    assert sorted({s for s, kind, _ in rows if kind == "eval"}) == [8, 16]
    assert not (run / "tensorboard").exists() and not (run / "wandb").exists()


def test_tensorboard_and_wandb_offline_get_the_same_steps(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = _train(tmp_path, capsys, "[csv, tensorboard, wandb]")
    expected = {(step, f"{kind}/{name}"): value for (step, kind, name), value in _jsonl(run).items()}

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    board = {(e.step, tag): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert board == pytest.approx(expected, rel=1e-6)  # TensorBoard stores float32

    path = next((run / "wandb").glob("offline-run-*/run-*.wandb"))
    deadline = time.monotonic() + 30
    while True:  # W&B's service process may still be flushing the run file after finish()
        history = _wandb_history(path)
        logged = {(step, tag): value for step, items in history for tag, value in items.items()
                  if not tag.startswith("_")}
        if len(logged) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert logged == pytest.approx(expected)


def test_unknown_logger_is_a_config_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="train.loggers: unknown logger 'mlflow'"):
        load_config(None, ["train.loggers=[csv, mlflow]"])
    assert main(["train", "--out", str(tmp_path), *TOY, "train.loggers=[comet]"]) == 2
    assert "unknown logger 'comet'" in capsys.readouterr().err


def _wandb_history(path: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, {key: value}) of the history records of an offline W&B run file: a log of
    32 KiB blocks of records (4-byte checksum, 2-byte length, 1-byte type) after a 7-byte header."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    block, pos, pending, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # block tail padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # a record still being written
            break
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind not in (1, 4):  # the first or a middle piece of a record
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        if record.WhichOneof("record_type") == "history":
            items = {(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                     for item in record.history.item}
            out.append((record.history.step.num, {k: v for k, v in items.items() if isinstance(v, (int, float))}))
    return out
