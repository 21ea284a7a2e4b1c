"""`ovar data check`: every bad file named, statistics, clean lists and exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ovar.cli import main
from ovar.data.check import CRASH_REASON, VideoCheck, probe_all, probe_video
from ovar.data.lists import read_list
from ovar.data.records import VideoRecord
from videogen import make_audio_only, make_frame_folder, make_video

# path -> (label, frames, fps, width, height) of the good videos
GOOD = {
    "a/one.mp4": (0, 24, 24, 96, 64),
    "a/two.mkv": (1, 30, 10, 64, 64),
    "b/three.mp4": (2, 48, 24, 96, 64),
    "frames_dir": (1, 12, 30, 96, 64),  # frame folders are assumed to be 30 fps
}
# path -> (label, words the reason must contain)
BAD = {
    "bad/empty.mp4": (0, "empty"),
    "bad/truncated.mp4": (2, "truncated"),
    "bad/corrupt.mp4": (1, "not a video"),
    "bad/notes.txt": (0, "not a video"),
    "bad/missing.avi": (2, "not found"),
    "bad/audio.m4a": (1, "no video stream"),
}
NAMES = ["archery", "bowling", "curling"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("check")
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    (folder / "bad").mkdir()
    for path, (_, frames, fps, w, h) in GOOD.items():
        if path == "frames_dir":
            make_frame_folder(folder / path, frames, size=(w, h))
        else:
            make_video(folder / path, num_frames=frames, fps=fps, size=(w, h))
    (folder / "bad/empty.mp4").write_bytes(b"")
    whole = (folder / "b/three.mp4").read_bytes()
    (folder / "bad/truncated.mp4").write_bytes(whole[: len(whole) // 3])
    (folder / "bad/corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (folder / "bad/notes.txt").write_text("shopping list\n- milk\n")
    make_audio_only(folder / "bad/audio.m4a")
    (folder / "classes.txt").write_text("\n".join(NAMES) + "\n")
    entries = [(p, GOOD[p][0]) for p in GOOD] + [(p, BAD[p][0]) for p in BAD]
    mixed = [entries[i] for i in (0, 4, 1, 5, 6, 2, 7, 8, 3, 9)]  # good and bad interleaved
    (folder / "all.txt").write_text("".join(f"{p} {label}\n" for p, label in mixed))
    (folder / "clean.csv").write_text("".join(f"{p},{GOOD[p][0]}\n" for p in GOOD))
    return folder


def check(capsys, *args) -> tuple[int, str, str]:
    code = main(["data", "check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_mixed_folder_names_every_bad_file(root, capsys):
    code, out, err = check(capsys, root / "all.txt", "--root", root, "--workers", 2, "--classes",
                           root / "classes.txt")
    assert code == 1
    assert out.startswith(f"{len(GOOD) + len(BAD)} videos checked: {len(GOOD)} ok, {len(BAD)} failed")
    failure_lines = out.split(f"failed videos ({len(BAD)}):\n", 1)[1].splitlines()
    assert len(failure_lines) == len(BAD)
    for name, (_, words) in BAD.items():
        line = next(x for x in failure_lines if x.startswith(f"{root / name}: "))
        assert words in line.split(": ", 1)[1]
    assert not any(str(root / good) in line for good in GOOD for line in failure_lines)
    assert "checking" in err  # the progress bar

    # Per class: ok / listed, computed from the tables above.
    for label, name in enumerate(NAMES):
        listed = sum(v[0] == label for v in GOOD.values()) + sum(v[0] == label for v in BAD.values())
        ok = sum(v[0] == label for v in GOOD.values())
        assert any(line.split() == [str(label), name, str(ok), "/", str(listed)] for line in out.splitlines())

    lines = [line.split() for line in out.splitlines()]
    durations = [frames / fps for _, frames, fps, _, _ in GOOD.values()]
    stats = [min(durations), float(np.median(durations)), max(durations)]
    assert ["duration", "(s)", *" / ".join(f"{d:.2f}" for d in stats).split()] in lines
    widths = [w for *_, w, _ in GOOD.values()]
    assert ["width", str(min(widths)), "/", f"{np.median(widths):.0f}", "/", str(max(widths))] in lines


@pytest.mark.parametrize("workers", [0, 1])
def test_clean_list_exits_0(root, capsys, workers):
    code, out, _ = check(capsys, root / "clean.csv", "--root", root, "--workers", workers, "--no-progress")
    assert code == 0
    assert out.startswith(f"{len(GOOD)} videos checked: {len(GOOD)} ok, 0 failed")
    assert "failed videos" not in out


def test_write_clean_keeps_only_the_good_entries(root, tmp_path, capsys):
    clean = tmp_path / "clean.txt"
    code, _, err = check(capsys, root / "all.txt", "--root", root, "--write-clean", clean, "--no-progress")
    assert code == 1 and f"wrote {len(GOOD)} of {len(GOOD) + len(BAD)} entries" in err
    listed = [line.split()[0] for line in (root / "all.txt").read_text().splitlines()]
    expected = [f"{p} {GOOD[p][0]}" for p in listed if p in GOOD]  # list order, space format kept
    assert clean.read_text().splitlines() == expected

    again = tmp_path / "again.csv"
    assert check(capsys, root / "clean.csv", "--root", root, "--write-clean", again, "--no-progress")[0] == 0
    assert read_list(again, fmt="comma") == read_list(root / "clean.csv")
    assert "," in again.read_text().splitlines()[0]  # comma list written back as comma


@pytest.mark.parametrize("content,where", [("a/one.mp4 zero\n", ":1:"), ("a/one.mp4 0\nb/three.mp4\n", ":2:")])
def test_bad_list_file_is_a_one_line_error(root, tmp_path, capsys, content, where):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    code, out, err = check(capsys, bad, "--root", root, "--no-progress")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and where in err and str(bad) in err


def test_user_errors_exit_2(root, tmp_path, capsys):
    code, _, err = check(capsys, tmp_path / "nothing.txt", "--root", root)
    assert code == 2 and "not found" in err
    code, _, err = check(capsys, root / "all.txt", "--root", tmp_path / "nowhere")
    assert code == 2 and "not a directory" in err
    two_classes = tmp_path / "two.txt"
    two_classes.write_text("archery\nbowling\n")
    code, _, err = check(capsys, root / "all.txt", "--root", root, "--classes", two_classes)
    assert code == 2 and "out of range" in err and len(err.strip().splitlines()) == 1


def _probe_crashing_on_truncated(path: str, frames: int, fps: float | None) -> VideoCheck:
    if path.endswith("truncated.mp4"):
        os._exit(3)  # what a decoder segfault looks like to the pool
    return probe_video(path, frames, fps)


def test_a_decoder_crash_names_the_video_and_the_check_goes_on(root):
    paths = [str(root / p) for p in ["a/one.mp4", "bad/truncated.mp4", "a/two.mkv", "bad/empty.mp4",
                                     "b/three.mp4", "frames_dir"]]
    results = probe_all(paths, workers=2, progress=False, probe=_probe_crashing_on_truncated)
    assert [r.path for r in results] == paths
    assert [r.ok for r in results] == [True, False, True, False, True, True]
    assert results[1].reason == CRASH_REASON
    assert "empty" in results[3].reason


def test_probe_reports_the_facts_of_a_good_video(root):
    result = probe_video(str(root / "a/two.mkv"))
    assert result.ok and (result.num_frames, result.fps, result.width, result.height) == (30, 10, 64, 64)
    assert result.duration == pytest.approx(3.0)
    assert not probe_video(str(root / "bad/notes.txt")).ok


def test_records_are_checked_under_root(root):
    from ovar.data.check import check_videos

    records = [VideoRecord("a/one.mp4", 0), VideoRecord("a/one.mp4", 0), VideoRecord("bad/empty.mp4", 1)]
    report = check_videos(records, root, workers=0, progress=False, class_names=NAMES)
    assert [r.ok for r in report.results] == [True, True, False]
    assert report.clean_records == records[:2]
    assert report.class_counts() == {0: (2, 0), 1: (1, 1), 2: (0, 0)}
    assert "1 entries repeat a path" in report.format()
