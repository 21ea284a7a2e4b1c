"""The `ovar` command line end to end: outputs, exit codes and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import pytest

from ovar.cli import main
from videogen import make_audio_only, make_frame_folder, make_video

TINY = ["--model", "tiny", "--pretrained", "none"]
LABELS = ["--labels", "surfing, skiing, dancing, archery"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    make_video(folder / "one.mp4", num_frames=48, fps=24, size=(96, 64))
    make_video(folder / "two.mkv", num_frames=20, fps=10, size=(64, 64))
    make_frame_folder(folder / "frames", 9)
    return folder


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_schema(capsys, videos):
    code, out, err = run(capsys, "predict", videos / "one.mp4", videos / "frames", *LABELS, *TINY,
                         "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [d["video"] for d in doc] == [str(videos / "one.mp4"), str(videos / "frames")]
    for entry in doc:
        assert set(entry) == {"video", "predictions"}
        scores = [p["score"] for p in entry["predictions"]]
        assert {p["label"] for p in entry["predictions"]} == {"surfing", "skiing", "dancing", "archery"}
        assert scores == sorted(scores, reverse=True)
        assert math.isclose(sum(scores), 1.0, abs_tol=1e-4)


def test_text_output_and_top_k(capsys, videos):
    code, out, _ = run(capsys, "predict", videos / "one.mp4", *LABELS, *TINY, "--top-k", "2")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0] == str(videos / "one.mp4") and len(lines) == 3
    assert lines[1].strip().startswith("1.")


def test_folder_to_csv(capsys, videos):
    code, out, _ = run(capsys, "predict", videos, *LABELS, *TINY, "--format", "csv", "--top-k", "1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert sorted(r["video"] for r in rows) == sorted(str(videos / n) for n in ("one.mp4", "two.mkv", "frames"))
    assert all(r["rank"] == "1" for r in rows)


def test_segments_and_plot(capsys, videos, tmp_path):
    plot = tmp_path / "timeline.png"
    code, out, err = run(capsys, "predict", videos / "one.mp4", *LABELS, *TINY, "--segments", "0.5",
                         "--plot", plot, "--format", "json")
    assert code == 0, err
    segments = json.loads(out)[0]["segments"]
    assert [(s["start"], s["end"]) for s in segments] == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _bad_inputs(folder):
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("hello, I am not a video\n" * 20)
    good = (folder.parent / "good.mp4")
    make_video(good, num_frames=30, fps=30, size=(64, 64))
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    make_audio_only(folder / "audio.m4a")
    return {"missing.mp4": "not found", "empty.mp4": "empty", "text.mp4": "", "truncated.mp4": "",
            "audio.m4a": "audio"}


def test_each_bad_input_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, words in _bad_inputs(bad).items():
        code, out, err = run(capsys, "predict", bad / name, *LABELS, *TINY)
        assert code == 2, name
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and words in lines[0].lower(), err
        assert "Traceback" not in err


@pytest.mark.parametrize("args, words", [
    (["--labels", ""], "empty"),
    (["--labels", "run, jump, run"], "duplicate"),
    (["--labels", "a, b", "--model", "ViT-Imaginary"], "unknown model"),
    (["--labels", "a, b", "--pretrained", "nowhere/w.pt"], "not found"),
    (["--labels-file", "no_such_labels.txt"], "no_such_labels.txt"),
])
def test_bad_arguments(capsys, videos, args, words):
    argv = ["predict", videos / "one.mp4", "--model", "tiny", "--pretrained", "none", *args]
    code, _, err = run(capsys, *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_folder_with_bad_files_continues_and_exits_1(capsys, videos, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ok.mp4").write_bytes((videos / "one.mp4").read_bytes())
    (mixed / "zero.mp4").write_bytes(b"")
    (mixed / "junk.avi").write_text("junk")
    code, out, err = run(capsys, "predict", mixed, *LABELS, *TINY, "--format", "json")
    assert code == 1
    doc = {d["video"]: d for d in json.loads(out)}  # failed videos are in the output with their error
    assert sorted(doc) == sorted(str(mixed / n) for n in ("junk.avi", "ok.mp4", "zero.mp4"))
    assert "error" not in doc[str(mixed / "ok.mp4")] and doc[str(mixed / "ok.mp4")]["predictions"]
    assert doc[str(mixed / "zero.mp4")]["predictions"] == [] and "empty" in doc[str(mixed / "zero.mp4")]["error"]
    assert "zero.mp4" in err and "junk.avi" in err and "2 of 3" in err


def test_console_script_without_traceback(tmp_path):
    """The installed entry point: a user error is one stderr line and exit status 2."""
    proc = subprocess.run([sys.executable, "-m", "ovar", "predict", str(tmp_path / "nope.mp4"), *LABELS, *TINY],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"ovar: error: {tmp_path / 'nope.mp4'}: file not found"


def test_models_lists_tiny(capsys):
    code, out, _ = run(capsys, "models", "--filter", "tiny")
    assert code == 0 and "tiny" in [line.split()[0] for line in out.splitlines()]
