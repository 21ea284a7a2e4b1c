"""Every user error of every command: exit status 2, one stderr line naming the option or
file, no traceback, and no file written.

The matrix runs in-process through ``ovar.cli.main`` (fast); a few rows run again through
a real ``python -m ovar`` subprocess to prove nothing prints a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ovar.cli import main
from videogen import make_video

TINY = ["--model", "tiny", "--pretrained", "none"]
TRAIN = ["--recipe", "toy_recipe:toy", "data.workers=0", "data.batch_size=8", "schedule.epochs=1",
         "schedule.warmup_epochs=0", "run.device=cpu"]
EVL = ["--recipe", "evl", "model.backbone=tiny", "model.pretrained=none", "data.classes=k400", "run.device=cpu"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A video, a list and class file for eval, a damaged checkpoint, a path list with a missing entry."""
    base = tmp_path_factory.mktemp("inputs")
    make_video(base / "clip.mp4", num_frames=16, fps=8, size=(64, 48))
    (base / "test.csv").write_text("clip.mp4,0\n")
    (base / "classes.txt").write_text("archery\nsurfing\n")
    (base / "a_file.txt").write_text("not a folder\n")
    torch.save({"model": {"w": torch.arange(4096, dtype=torch.float32)}}, base / "whole.pt")
    data = (base / "whole.pt").read_bytes()
    (base / "damaged.pt").write_bytes(data[: len(data) // 2])
    (base / "empty_list.txt").write_text("# nothing here\n\n")
    (base / "sub").mkdir()
    (base / "outside.csv").write_text("../clip.mp4,0\n")
    return base


def _cuda_or_mps_present(name: str) -> bool:
    if name == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return torch.cuda.is_available()


def _predict(*extra: str) -> list[str]:
    return ["predict", "{in}/clip.mp4", "--labels", "archery, surfing", *TINY, *extra]


def _eval(*extra: str) -> list[str]:
    return ["eval", "--protocol", "closed", "--root", "{in}", "--list", "{in}/test.csv",
            "--classes", "{in}/classes.txt", "--out", "{tmp}/eval", *extra]


# (id, argv, text the error line must contain). {in}: the inputs folder; {tmp}: the test's
# empty folder, which must still be empty afterwards.
CASES = [
    # predict
    ("predict-views-0x0", _predict("--views", "0x0"), "--views"),
    ("predict-views-word", _predict("--views", "many"), "--views"),
    ("predict-sampling", _predict("--sampling", "bogus"), "--sampling"),
    ("predict-sampling-i3d-zero", _predict("--sampling", "i3d:0"), "--sampling"),
    ("predict-workers", _predict("--workers", "-1"), "--workers"),
    ("predict-segments-inf", _predict("--segments", "inf"), "--segments"),
    ("predict-segments-nan", _predict("--segments", "nan"), "--segments"),
    ("predict-segments-zero", _predict("--segments", "0"), "--segments"),
    ("predict-frames", _predict("--frames", "0"), "--frames"),
    ("predict-top-k", _predict("--top-k", "0"), "--top-k"),
    ("predict-batch-size", _predict("--batch-size", "-3"), "--batch-size"),
    ("predict-patch-ratio", _predict("--patch-ratio", "1.25"), "--patch-ratio"),
    ("predict-format", _predict("--format", "xml"), "--format"),
    ("predict-output-missing-folder", _predict("-o", "{tmp}/no/such/out.json"), "no/such"),
    ("predict-output-is-folder", _predict("-o", "{tmp}"), "folder"),
    ("predict-plot-without-segments", _predict("--plot", "{tmp}/t.png"), "--plot"),
    ("predict-plot-is-folder", _predict("--segments", "1", "--plot", "{tmp}"), "--plot"),
    ("predict-device-tpu", _predict("--device", "tpu"), "tpu"),
    ("predict-device-cuda-x", _predict("--device", "cuda:x"), "cuda:x"),
    ("predict-labels-file", ["predict", "{in}/clip.mp4", "--labels-file", "{in}/nope.txt", *TINY], "nope.txt"),
    ("predict-descriptions", ["predict", "{in}/clip.mp4", "--descriptions", "{in}/nope.json", *TINY], "nope.json"),
    ("predict-checkpoint-damaged", _predict("--checkpoint", "{in}/damaged.pt"), "damaged.pt"),
    ("predict-checkpoint-missing", _predict("--checkpoint", "{in}/gone.pt"), "gone.pt"),
    ("predict-pretrained-missing", ["predict", "{in}/clip.mp4", "--labels", "a, b", "--model", "tiny",
                                    "--pretrained", "{in}/gone.pt"], "gone.pt"),
    ("predict-video-missing", ["predict", "{in}/gone.mp4", "--labels", "a, b", *TINY], "gone.mp4"),
    ("predict-list-missing", ["predict", "@{in}/gone.txt", "--labels", "a, b", *TINY], "gone.txt"),
    ("predict-list-empty", ["predict", "@{in}/empty_list.txt", "--labels", "a, b", *TINY], "empty_list.txt"),
    ("predict-templates-missing", _predict("--templates", "{in}/gone_templates.txt"), "gone_templates"),
    ("predict-model-unknown", ["predict", "{in}/clip.mp4", "--labels", "a, b", "--model", "ViT-Z-99",
                               "--pretrained", "none"], "ViT-Z-99"),
    ("predict-clip-without-checkpoint", _predict("--clip", "{in}/whole.pt"), "--clip"),
    ("predict-stdin-twice", ["predict", "-", "-", "--labels", "a, b", *TINY], "'-'"),
    # eval
    ("eval-splits", _eval(*TINY, "--splits", "0"), "--splits"),
    ("eval-seed", _eval(*TINY, "--seed", "-1"), "--seed"),
    ("eval-patch-ratio", _eval(*TINY, "--patch-ratio", "2"), "--patch-ratio"),
    ("eval-descriptions-missing", _eval(*TINY, "--descriptions", "{in}/gone.json"), "gone.json"),
    ("eval-lists-missing", ["eval", "--protocol", "cross-dataset", "--root", "{in}", "--lists", "{in}/gone_dir",
                            "--out", "{tmp}/eval", *TINY], "gone_dir"),
    ("eval-train-list-missing", ["eval", "--protocol", "few-shot", "--root", "{in}", "--train-list", "{in}/gone.csv",
                                 "--list", "{in}/test.csv", "--classes", "{in}/classes.txt", "--out", "{tmp}/eval",
                                 *TRAIN], "gone.csv"),
    ("eval-recipe-unknown", ["eval", "--checkpoint", "{in}/whole.pt", "--recipe", "nope"], "nope"),
    ("eval-config-missing", ["eval", "--checkpoint", "{in}/whole.pt", "--config", "{in}/gone.yaml"], "gone.yaml"),
    ("eval-out-is-file", _eval(*TINY, "--out", "{in}/a_file.txt"), "--out"),
    ("eval-out-under-file", _eval(*TINY, "--out", "{in}/a_file.txt/sub"), "a_file.txt"),
    ("eval-device-tpu", _eval(*TINY, "--device", "tpu"), "tpu"),
    ("eval-checkpoint-damaged", _eval("--checkpoint", "{in}/damaged.pt"), "damaged.pt"),
    ("eval-run-checkpoint-damaged", ["eval", "--checkpoint", "{in}/damaged.pt", "--out", "{tmp}/run", *TRAIN],
     "damaged.pt"),
    ("eval-views", _eval(*TINY, "--views", "3"), "--views"),
    ("eval-batch-size", _eval(*TINY, "--batch-size", "0"), "--batch-size"),
    ("eval-workers", _eval(*TINY, "--workers", "-1"), "--workers"),
    ("eval-precision", _eval(*TINY, "--precision", "fp8"), "--precision"),
    ("eval-fusion", _eval(*TINY, "--fusion", "max"), "--fusion"),
    ("eval-shots", _eval(*TINY, "--shots", "two"), "--shots"),
    ("eval-protocol", ["eval", "--protocol", "open"], "--protocol"),
    ("eval-list-missing", ["eval", "--protocol", "closed", "--root", "{in}", "--list", "{in}/gone.csv",
                           "--classes", "{in}/classes.txt", "--out", "{tmp}/eval", *TINY], "gone.csv"),
    ("eval-classes-missing", ["eval", "--protocol", "closed", "--root", "{in}", "--list", "{in}/test.csv",
                              "--classes", "{in}/gone.txt", "--out", "{tmp}/eval", *TINY], "gone.txt"),
    # train (its configuration is validated by the engine)
    ("train-frames-0", ["train", "--out", "{tmp}/run", *TRAIN, "data.frames=0"], "data.frames"),
    ("train-lr-negative", ["train", "--out", "{tmp}/run", *TRAIN, "optim.lr=-1"], "optim.lr"),
    ("train-sampling", ["train", "--out", "{tmp}/run", *TRAIN, "data.sampling=bogus"], "data.sampling"),
    ("train-sampling-i3d", ["train", "--out", "{tmp}/run", *TRAIN, "data.sampling=i3d:8x16"], "data.sampling"),
    ("train-device", ["train", "--out", "{tmp}/run", *TRAIN, "run.device=tpu"], "tpu"),
    ("train-resume-missing", ["train", "--out", "{tmp}/run", *TRAIN, "--resume", "{in}/gone.pt"], "gone.pt"),
    ("eval-b2n-videos-not-under-root", ["eval", "--protocol", "base2novel", "--root", "{in}", "--datasets", "ucf101",
                                        "--out", "{tmp}/b2n", *TINY], "none of its"),
    # output paths that are files where a folder is written (and the reverse), numbers out of range
    ("demo-out-is-a-file", ["demo", "--out", "{in}/a_file.txt"], "a_file.txt"),
    ("synth-out-is-a-file", ["data", "synth", "{in}/a_file.txt"], "a_file.txt"),
    ("export-out-is-a-file", ["export", "{in}/whole.pt", "{in}/a_file.txt"], "a_file.txt"),
    ("pretrain-out-is-a-folder", ["pretrain-tiny", "{in}/sub"], "folder"),
    ("pretrain-lr-negative", ["pretrain-tiny", "{tmp}/c.pt", "--lr", "-1"], "--lr"),
    ("pretrain-lr-nan", ["pretrain-tiny", "{tmp}/c.pt", "--lr", "nan"], "--lr"),
    ("serve-port", ["serve", *TINY, "--port", "70000"], "--port"),
    ("serve-batch-wait-nan", ["serve", *TINY, "--batch-wait-ms", "nan"], "--batch-wait-ms"),
    ("convert-frames-0", ["convert", "{in}/whole.pt", "--from", "actionclip", "--out", "{tmp}/c.pt",
                          "--frames", "0"], "--frames"),
    ("train-config-missing", ["train", "--config", "{in}/gone.yaml", "--out", "{tmp}/run"], "gone.yaml"),
    ("train-evl-finetune-word", ["train", "--out", "{tmp}/run", *EVL, "recipe.finetune_backbone=maybe"],
     "recipe.finetune_backbone"),
    ("train-evl-finetune-cache", ["train", "--out", "{tmp}/run", *EVL, "recipe.finetune_backbone=true",
                                  "recipe.cache.enabled=true"], "recipe.cache.enabled"),
    ("train-evl-backbone-lr", ["train", "--out", "{tmp}/run", *EVL, "recipe.backbone_lr_scale=-1"],
     "recipe.backbone_lr_scale"),
    # convert / weights
    ("convert-out-folder", ["convert", "{in}/whole.pt", "--from", "actionclip", "--out", "{tmp}"], "folder"),
    ("convert-from", ["convert", "{in}/whole.pt", "--from", "clip4clip", "--out", "{tmp}/m.pt"], "--from"),
    ("convert-patch-ratio", ["convert", "{in}/whole.pt", "--from", "open_vclip", "--patch-ratio", "-0.5",
                             "--out", "{tmp}/m.pt"], "--patch-ratio"),
    ("convert-missing", ["convert", "{in}/gone.pt", "--from", "actionclip", "--out", "{tmp}/m.pt"], "gone.pt"),
    ("convert-frames", ["convert", "{in}/whole.pt", "--from", "actionclip", "--frames", "0", "--out", "{tmp}/m.pt"],
     "--frames"),
    ("convert-fusion", ["convert", "{in}/whole.pt", "--from", "actionclip", "--fusion", "GRU", "--out", "{tmp}/m.pt"],
     "--fusion"),
    ("convert-temporal", ["convert", "{in}/whole.pt", "--from", "froster", "--temporal", "x", "--out", "{tmp}/m.pt"],
     "--temporal"),
    ("convert-damaged", ["convert", "{in}/damaged.pt", "--from", "actionclip", "--out", "{tmp}/m.pt"], "damaged.pt"),
    ("convert-labels-missing", ["convert", "{in}/whole.pt", "--from", "evl", "--labels", "{in}/gone.txt",
                                "--out", "{tmp}/m.pt"], "gone.txt"),
    ("weights-to-before-from", ["weights", "average", "{in}/whole.pt", "--from-epoch", "3", "--to-epoch", "2",
                                "--out", "{tmp}/w.pt"], "--to-epoch"),
    ("weights-b-missing", ["weights", "interpolate", "--ratio", "0.25", "{in}/whole.pt", "{in}/gone.pt",
                           "--out", "{tmp}/w.pt"], "gone.pt"),
    ("weights-average-out-folder", ["weights", "average", "{in}/whole.pt", "--out", "{tmp}"], "folder"),
    ("weights-interpolate-out-folder", ["weights", "interpolate", "--ratio", "0.25", "{in}/whole.pt",
                                        "{in}/whole.pt", "--out", "{tmp}"], "folder"),
    ("weights-ratio", ["weights", "interpolate", "--ratio", "1.5", "{in}/whole.pt", "{in}/whole.pt",
                       "--out", "{tmp}/w.pt"], "--ratio"),
    ("weights-from-epoch", ["weights", "average", "{in}/whole.pt", "--from-epoch", "-2", "--out", "{tmp}/w.pt"],
     "--from-epoch"),
    # cache / data / models
    ("cache-device", ["cache", "build", "--config", "{in}/gone.yaml", "--device", "tpu"], "tpu"),
    ("cache-batch-size", ["cache", "build", "--config", "{in}/gone.yaml", "--batch-size", "0"], "--batch-size"),
    ("data-check-workers", ["data", "check", "{in}/test.csv", "--workers", "-1"], "--workers"),
    ("data-check-frames", ["data", "check", "{in}/test.csv", "--frames", "0"], "--frames"),
    ("data-check-list-missing", ["data", "check", "{in}/gone.csv"], "gone.csv"),
    ("data-check-root-missing", ["data", "check", "{in}/test.csv", "--root", "{in}/nowhere"], "nowhere"),
    ("data-check-fps", ["data", "check", "{in}/test.csv", "--fps", "-5"], "--fps"),
    ("data-check-format", ["data", "check", "{in}/test.csv", "--format", "tsv"], "--format"),
    ("data-check-classes-missing", ["data", "check", "{in}/test.csv", "--classes", "{in}/gone.txt"], "gone.txt"),
    ("data-check-write-clean-folder", ["data", "check", "{in}/test.csv", "--root", "{in}", "--write-clean", "{tmp}"],
     "--write-clean"),
    ("data-check-outside-root", ["data", "check", "{in}/outside.csv", "--root", "{in}/sub"], "outside the data root"),
    ("data-splits-no-match", ["data", "splits", "zzz-nothing"], "zzz-nothing"),
    ("data-splits-format", ["data", "splits", "--format", "xml"], "--format"),
    ("models-unknown-option", ["models", "--colour"], "--colour"),
    ("no-command", ["frobnicate"], "frobnicate"),
]
# An absent accelerator is a user error too (rows skipped where one is present).
DEVICE_CASES = [(f"{cmd}-device-{dev}", argv, dev.split(":")[0].upper() if dev != "cuda:7" else "cuda")
                for dev in ("cuda", "cuda:7", "mps")
                for cmd, argv in (("predict", _predict("--device", dev)),
                                  ("eval", _eval(*TINY, "--device", dev)))]


def _fill(argv: list[str], inputs: Path, tmp: Path) -> list[str]:
    return [a.replace("{in}", str(inputs)).replace("{tmp}", str(tmp)) for a in argv]


def _tree(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


def _check(argv: list[str], words: str, inputs: Path, tmp: Path, capsys) -> None:
    before = _tree(inputs, tmp)
    capsys.readouterr()
    try:
        code = main(_fill(argv, inputs, tmp))
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("ovar: error: "), err
    assert words.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err and out == ""
    assert _tree(inputs, tmp) == before, f"a failed command wrote {_tree(inputs, tmp) - before}"


@pytest.mark.parametrize("argv, words", [
    pytest.param(argv, words, id=name)
    for name, argv, words in CASES])
def test_user_error_is_one_line_exit_2(argv, words, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # toy_recipe for the train rows
    _check(argv, words, inputs, tmp_path, capsys)


@pytest.mark.parametrize("argv, words", [pytest.param(a, w, id=n) for n, a, w in DEVICE_CASES])
def test_absent_accelerator_is_a_user_error(argv, words, inputs, tmp_path, capsys):
    device = argv[argv.index("--device") + 1]
    if _cuda_or_mps_present(device.split(":")[0]) and device != "cuda:7":
        pytest.skip(f"{device} is present here")
    if device == "cuda:7" and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _check(argv, words, inputs, tmp_path, capsys)


@pytest.mark.parametrize("name", ["predict-sampling", "eval-checkpoint-damaged", "convert-out-folder",
                                  "predict-output-missing-folder"])
def test_real_process_prints_no_traceback(name, inputs, tmp_path):
    argv = next(a for n, a, _ in CASES if n == name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "ovar", *_fill(argv, inputs, tmp_path)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("ovar: error: ")
    assert not any(tmp_path.iterdir())


def test_help_imports_no_heavy_module():
    """`ovar --help` and every command's --help build the parser without torch, open_clip or av."""
    code = ("import sys, contextlib, io\n"
            "from ovar.cli import build_parser, main\n"
            "parser = build_parser()\n"
            "for argv in (['--help'], ['predict', '--help'], ['eval', '--help'], ['convert', '--help'],\n"
            "             ['train', '--help'], ['weights', 'average', '--help'], ['data', 'check', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit:\n"
            "            pass\n"
            "print(sorted(m for m in ('torch', 'open_clip', 'av', 'torchvision', 'matplotlib', 'numpy')\n"
            "             if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_parser_choices_match_the_library():
    """The converter's option names come from the hub's tables (no torch import); the models build
    exactly those."""
    from ovar.cli import convert_cmd
    from ovar.models.convert import SOURCES
    from ovar.models.temporal import FUSION_TYPES
    from ovar.models.temporal.expand_view import TEMPORAL_TYPES

    assert convert_cmd.SOURCES == SOURCES
    assert convert_cmd.FUSION_TYPES == FUSION_TYPES
    assert convert_cmd.TEMPORAL_TYPES == TEMPORAL_TYPES


def test_one_device_resolver_for_every_command():
    from ovar.devices import DeviceError, check_device_name, resolve_device
    from ovar.train.distributed import resolve_device as engine_resolve

    expected_auto = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == resolve_device(None) == engine_resolve("auto") == expected_auto
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert [check_device_name(n) for n in ("cuda", "cuda:3", "Mps")] == ["cuda", "cuda:3", "mps"]
    for bad in ("tpu", "cuda:", "cuda:-1", "gpu0", "cpu:0", ""):
        with pytest.raises(DeviceError, match="expected auto, cpu, cuda, cuda:N or mps"):
            check_device_name(bad)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            engine_resolve("cuda", local_rank=1)


def test_one_meaning_of_precision_for_training_and_evaluation():
    from ovar.devices import PrecisionError, autocast, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(PrecisionError, match=r"^--precision: fp16 needs a GPU"):
        resolve_precision("fp16", cpu, "--precision")
    with pytest.raises(PrecisionError, match=r"^--precision: expected one of auto, fp32, fp16, bf16, got 'fp8'"):
        resolve_precision("fp8", cpu, "--precision")
    layer = torch.nn.Linear(3, 2)
    x = torch.full((1, 3), 0.25)
    with autocast("bf16", cpu):
        assert layer(x).dtype == torch.bfloat16
    with autocast("fp32", cpu):
        assert layer(x).dtype == torch.float32
