"""Nothing lost in long predictions: failed videos in every output format, JSON lines written
as results arrive (a killed run keeps them), ``@list`` and ``-`` inputs, truncated files flagged."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest

from ovar.cli import main
from ovar.video import open_video
from videogen import make_video

TINY = ["--model", "tiny", "--pretrained", "none"]
LABELS = ["--labels", "surfing, skiing, archery"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    make_video(folder / "a.mp4", num_frames=24, fps=12, size=(64, 48))
    make_video(folder / "b.mp4", num_frames=18, fps=12, size=(64, 48))
    (folder / "broken.mp4").write_bytes(b"\x00" * 300)
    # A file cut short after its index: the container declares 90 frames, fewer are there.
    make_video(folder / "whole.mp4", num_frames=90, fps=30, size=(64, 64), faststart=True)
    data = (folder / "whole.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: int(len(data) * 0.8)])
    return folder


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_failed_video_is_a_row_in_json_csv_and_text(capsys, clips):
    videos = [clips / "a.mp4", clips / "broken.mp4", clips / "b.mp4"]
    code, out, err = run(capsys, "predict", *videos, *LABELS, *TINY, "--format", "json")
    assert code == 1 and "1 of 3 videos failed" in err
    doc = json.loads(out)
    assert [d["video"] for d in doc] == [str(v) for v in videos]  # input order, failure in place
    assert doc[1]["predictions"] == [] and doc[1]["error"]
    assert "error" not in doc[0] and len(doc[0]["predictions"]) == 3

    code, out, _ = run(capsys, "predict", *videos, *LABELS, *TINY, "--format", "csv", "--top-k", "2")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1
    assert [r["video"] for r in rows] == [str(videos[0])] * 2 + [str(videos[1])] + [str(videos[2])] * 2
    bad = rows[2]
    assert bad["error"] == doc[1]["error"] and bad["label"] == bad["score"] == bad["rank"] == ""
    assert all(r["error"] == "" for r in rows if r is not bad)

    code, out, _ = run(capsys, "predict", *videos, *LABELS, *TINY)
    lines = out.splitlines()
    at = lines.index(str(videos[1]))
    assert lines[at + 1] == f"  error: {doc[1]['error']}"


def test_jsonl_matches_json(capsys, clips, tmp_path):
    videos = [clips / "b.mp4", clips / "broken.mp4", clips / "a.mp4"]
    _, as_json, _ = run(capsys, "predict", *videos, *LABELS, *TINY, "--format", "json")
    code, _, _ = run(capsys, "predict", *videos, *LABELS, *TINY, "--format", "jsonl", "-o", tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert code == 1 and len(lines) == 3
    assert [json.loads(line) for line in lines] == json.loads(as_json)


def test_list_file_and_stdin(capsys, clips, tmp_path, monkeypatch):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# evening batch\n{clips / 'a.mp4'}\n\n  {clips / 'b.mp4'}  \n{clips / 'gone.mp4'}\n")
    code, out, err = run(capsys, "predict", f"@{listing}", *LABELS, *TINY, "--format", "json")
    doc = json.loads(out)
    # A stale line in a list is a failed video in the output, not the end of the run.
    assert code == 1 and [d["video"] for d in doc] == [str(clips / n) for n in ("a.mp4", "b.mp4", "gone.mp4")]
    assert doc[2]["error"] == "file not found" and "gone.mp4" in err

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{clips / 'b.mp4'}\n"))
    code, out, _ = run(capsys, "predict", clips / "a.mp4", "-", *LABELS, *TINY, "--format", "json")
    from_stdin = json.loads(out)
    assert code == 0 and [d["video"] for d in from_stdin] == [str(clips / "a.mp4"), str(clips / "b.mp4")]
    assert from_stdin[:2] == doc[:2]  # the same videos score the same whichever way they were named


def test_a_one_line_list_is_still_a_batch(capsys, clips, tmp_path):
    listing = tmp_path / "one.txt"
    listing.write_text(f"{clips / 'broken.mp4'}\n")
    code, out, _ = run(capsys, "predict", f"@{listing}", *LABELS, *TINY, "--format", "json")
    assert code == 1 and json.loads(out)[0]["error"]  # reported in the output, not a usage error


def _frames_present(path: Path) -> int:
    """Intact video packets (one frame each) before the cut-off data ends (an independent count)."""
    count = 0
    with av.open(str(path)) as container:
        try:
            for packet in container.demux(video=0):
                count += packet.size > 0 and not packet.is_corrupt
        except av.error.FFmpegError:
            pass
    return count


def test_truncated_video_is_flagged(capsys, clips):
    with open_video(clips / "cut.mp4") as reader:
        info = reader.info
    present = _frames_present(clips / "cut.mp4")
    with av.open(str(clips / "cut.mp4")) as container:
        declared = container.streams.video[0].frames
    assert declared == 90 and present < 80
    assert info.truncated and info.declared_frames == 90 and info.num_frames == present
    with open_video(clips / "whole.mp4") as reader:
        assert not reader.info.truncated and reader.info.declared_frames == 90

    code, out, err = run(capsys, "predict", clips / "cut.mp4", clips / "whole.mp4", *LABELS, *TINY, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc[0]["predictions"]  # scored on what is there...
    assert f"only {present} of the 90 frames" in doc[0]["warning"]  # ...and flagged
    assert "warning" not in doc[1]
    assert f"ovar: warning: {clips / 'cut.mp4'}: truncated" in err


_KILL_AFTER_TWO = """
import os, signal, sys
import ovar.cli.output as output
real, written = output.write_jsonl_line, []
def write_then_die(result, out):
    real(result, out)
    written.append(result)
    if len(written) == 2:  # a hard kill: no finally, no close, no buffer flush runs after this
        os.kill(os.getpid(), signal.SIGKILL)
output.write_jsonl_line = write_then_die
from ovar.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_jsonl_run_keeps_finished_lines(clips, tmp_path):
    """SIGKILL right after the second result: both lines are complete on disk, nothing after them."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    listing = tmp_path / "videos.txt"
    listing.write_text("\n".join(str(clips / n) for n in ("a.mp4", "broken.mp4", "b.mp4")) + "\n")
    target = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "-c", _KILL_AFTER_TWO, "predict", f"@{listing}", *LABELS, *TINY,
                           "--format", "jsonl", "--batch-size", "1", "-o", str(target)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    lines = target.read_text().splitlines()
    assert [json.loads(line)["video"] for line in lines] == [str(clips / "a.mp4"), str(clips / "broken.mp4")]
    assert json.loads(lines[0])["predictions"] and json.loads(lines[1])["error"]


def test_data_check_lists_a_truncated_video_as_damaged(capsys, clips, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("cut.mp4 0\nwhole.mp4 1\n")
    code, out, _ = run(capsys, "data", "check", listing, "--root", clips, "--workers", "0", "--no-progress")
    assert code == 0 and "2 videos checked: 2 ok, 0 failed" in out
    section = out.split("readable but damaged videos (1):\n", 1)[1].splitlines()
    assert section[0].startswith(f"{clips / 'cut.mp4'}: truncated: only ") and "of the 90 frames" in section[0]
    assert "whole.mp4" not in out.split("readable but damaged", 1)[1]
