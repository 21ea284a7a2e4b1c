"""Tests for videos stored as folders of numbered frame images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ovar.errors import VideoDecodeError
from ovar.video import DEFAULT_FOLDER_FPS, FrameFolderReader, is_frame_folder, open_video, read_info
from ovar.video.frames import list_frames
from videogen import frame_index_of, make_frame_folder, make_video, shared_videos_dir


def indices_of(frames: torch.Tensor) -> list[int]:
    return [frame_index_of(f) for f in frames]


PATTERNS = [
    ("img_{:05d}.jpg", 1),
    ("img_{:05d}.jpg", 0),
    ("image_{:04d}.jpg", 1),
    ("frame_{:06d}.png", 0),
    ("frame{:04d}.png", 1),
    ("{:05d}.jpg", 1),
    ("{:06d}.jpeg", 0),
    ("{}.png", 1),  # no zero padding: "10.png" must come after "9.png"
    ("video7_frame_{}.JPG", 0),
]


@pytest.mark.parametrize("pattern,start", PATTERNS, ids=[f"{p}@{s}" for p, s in PATTERNS])
def test_naming_patterns(tmp_path, pattern, start):
    folder = make_frame_folder(tmp_path / "v", 12, pattern=pattern, start=start, size=(80, 60))
    assert is_frame_folder(folder)
    with open_video(folder) as reader:
        assert isinstance(reader, FrameFolderReader)
        info = reader.info
        assert (info.num_frames, info.width, info.height, info.rotation) == (12, 80, 60, 0)
        assert info.codec == ("png" if pattern.endswith(".png") else "jpeg")
        frames = reader.get_frames([11, 0, 5, 5, 9, 10])
    assert frames.dtype == torch.uint8 and frames.shape == (6, 3, 60, 80)
    assert indices_of(frames) == [11, 0, 5, 5, 9, 10]


def test_fps_default_and_override(tmp_path):
    folder = make_frame_folder(tmp_path / "v", 15)
    info = read_info(folder)
    assert info.fps == DEFAULT_FOLDER_FPS == 30.0
    assert info.duration == pytest.approx(15 / 30)
    info = open_video(folder, fps=12.5).info
    assert info.fps == 12.5 and info.duration == pytest.approx(15 / 12.5)


def test_clamping_and_negative(tmp_path):
    folder = make_frame_folder(tmp_path / "v", 5)
    with open_video(folder) as reader:
        assert indices_of(reader.get_frames([3, 4, 5, 99])) == [3, 4, 4, 4]
        with pytest.raises(ValueError):
            reader.get_frames([-1])


def test_only_requested_images_are_read(tmp_path):
    folder = make_frame_folder(tmp_path / "v", 40)
    with open_video(folder) as reader:
        reader.get_frames([3, 3, 20, 39, 39, 100])
        assert reader.frames_decoded == 3  # 3, 20, 39 (100 clamps to 39)


def test_non_images_are_ignored(tmp_path):
    folder = make_frame_folder(tmp_path / "v", 6)
    (folder / "notes.txt").write_text("not a frame")
    (folder / "labels_001.json").write_text("{}")
    (folder / "img_00099.jpg").mkdir()  # a directory named like a frame
    (folder / "Thumbs.db").write_bytes(b"\0" * 10)
    names = list_frames(folder)
    assert names == [f"img_{i:05d}.jpg" for i in range(1, 7)]
    assert indices_of(open_video(folder).get_frames(range(6))) == list(range(6))


def test_mixed_prefixes_use_the_most_common(tmp_path):
    folder = make_frame_folder(tmp_path / "v", 9, pattern="x_{:05d}.jpg", size=(64, 48))
    # A second series with fewer, differently sized images must not be mixed in.
    make_frame_folder(folder, 4, pattern="y_{:05d}.jpg", size=(32, 32))
    reader = open_video(folder)
    assert reader.info.num_frames == 9 and (reader.info.width, reader.info.height) == (64, 48)
    assert indices_of(reader.get_frames([0, 8])) == [0, 8]


def test_rgb_series_preferred_over_equally_long_flow(tmp_path):
    # TSN-style extraction: img_*, flow_x_*, flow_y_* with the same number of files.
    folder = tmp_path / "v"
    make_frame_folder(folder, 5, pattern="flow_x_{:05d}.jpg", size=(40, 30))
    make_frame_folder(folder, 5, pattern="flow_y_{:05d}.jpg", size=(40, 30))
    make_frame_folder(folder, 5, pattern="img_{:05d}.jpg", size=(96, 64))
    assert list_frames(folder)[0] == "img_00001.jpg"
    assert open_video(folder).info.width == 96


def test_not_frame_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a_001.txt").write_text("x")
    videos = tmp_path / "videos"
    videos.mkdir()
    video = make_video(videos / "clip_0001.mp4", num_frames=3)
    for path in (empty, texts, videos, video, tmp_path / "missing"):
        assert not is_frame_folder(path)
    for path in (empty, texts, videos):
        with pytest.raises(VideoDecodeError, match="not a frame folder") as err:
            open_video(path)
        assert str(path) in str(err.value)


def test_corrupt_image_raises(tmp_path):
    folder = make_frame_folder(tmp_path / "v", 4)
    (folder / "img_00003.jpg").write_bytes(b"garbage, not a jpeg")
    with open_video(folder) as reader:
        assert indices_of(reader.get_frames([0, 1])) == [0, 1]
        with pytest.raises(VideoDecodeError) as err:
            reader.get_frames([2])
    assert "img_00003.jpg" in str(err.value)


def test_size_change_raises(tmp_path):
    folder = make_frame_folder(tmp_path / "v", 3, size=(64, 48))
    make_frame_folder(folder, 1, pattern="img_{:05d}.jpg", start=3, size=(32, 32))
    with pytest.raises(VideoDecodeError, match="size"):
        open_video(folder).get_frames([2])


def test_shared_frame_folder():
    folder = shared_videos_dir() / "frames" / "test_imgs"
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")
    info = read_info(folder)
    assert info.num_frames == 10 and info.codec == "jpeg"
    with open_video(folder) as reader:
        frames = reader.get_frames([9, 0, 4])
    for frame, i in zip(frames, [9, 0, 4]):
        with Image.open(folder / f"img_{i + 1:05d}.jpg") as img:
            expected = np.asarray(img.convert("RGB"))
        assert frame.shape == (3, info.height, info.width)
        # Two JPEG decoders may differ by a rounding step, never more.
        diff = np.abs(frame.permute(1, 2, 0).numpy().astype(int) - expected.astype(int))
        assert diff.max() <= 2
