"""Tests for the PyAV reader: formats, exact frame selection, planning, metadata, errors."""

from __future__ import annotations

import random
import shutil
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from ovar.errors import VideoDecodeError
from ovar.video import VIDEO_EXTENSIONS, open_video, plan_reads, read_info
from ovar.video.decode import PyAVReader
from ovar.video.info import choose_fps, fps_from_timestamps
from videogen import (
    decode_all,
    frame_index_of,
    has_encoder,
    make_audio_only,
    make_video,
    set_mp4_rotation,
    shared_videos_dir,
)


def need(codec: str) -> None:
    if not has_encoder(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")


def indices_of(frames: torch.Tensor) -> list[int]:
    return [frame_index_of(f) for f in frames]


def assert_same_as_sequential(path: Path, requests: list[list[int]]) -> None:
    """ovar's frames equal plain PyAV's sequential decode, bit for bit, on one reader."""
    ref = decode_all(path)
    with open_video(path) as reader:
        assert reader.info.num_frames == len(ref)
        for wanted in requests:
            got = reader.get_frames(wanted)
            for i, frame in zip(wanted, got):
                expected = ref[min(i, len(ref) - 1)]
                assert np.array_equal(frame.permute(1, 2, 0).numpy(), expected), (path.name, i)


# ---- formats ------------------------------------------------------------------------

FORMATS = [
    ("mp4", "libx264", {}),
    ("avi", "mpeg4", {}),
    ("webm", "libvpx-vp9", {}),
    ("webm", "libvpx", {}),
    ("mkv", "libx264", {}),
    ("mov", "libx264", {}),
    ("avi", "mjpeg", {}),
    ("mjpeg", "mjpeg", {}),  # raw MJPEG: no container timestamps at all
    ("h264", "libx264", {}),  # raw Annex-B H.264: no timestamps either
    ("flv", "flv", {}),
    ("ts", "libx264", {}),
    ("mpg", "mpeg2video", {}),
    ("mkv", "libx265", {}),
    ("wmv", "wmv2", {}),
    ("mp4", "mpeg4", {"bframes": 2}),
    ("mkv", "libx264", {"audio": True, "bframes": 2}),  # an audio stream is ignored
]


@pytest.mark.parametrize("suffix,codec,kw", FORMATS,
                         ids=["-".join([s, c, *kw]) for s, c, kw in FORMATS])
def test_formats_return_exact_frames(tmp_path, suffix, codec, kw):
    need(codec)
    path = make_video(tmp_path / f"v.{suffix}", num_frames=30, fps=25, size=(96, 64),
                      codec=codec, gop=8, **kw)
    with open_video(path) as reader:
        info = reader.info
        assert (info.num_frames, info.width, info.height, info.rotation) == (30, 96, 64, 0)
        assert info.fps == pytest.approx(25, rel=0.01)
        assert info.duration == pytest.approx(30 / info.fps)
        wanted = [29, 0, 13, 13, 7, 28]
        frames = reader.get_frames(wanted)
        assert frames.dtype == torch.uint8 and frames.shape == (6, 3, 64, 96)
        assert indices_of(frames) == wanted
    rng = random.Random(suffix + codec)
    assert_same_as_sequential(path, [sorted(rng.sample(range(30), 5)) for _ in range(3)])


def test_codec_names(tmp_path):
    assert read_info(make_video(tmp_path / "a.mp4", num_frames=3)).codec == "h264"
    assert read_info(make_video(tmp_path / "b.avi", num_frames=3, codec="mpeg4")).codec == "mpeg4"


def test_bframes_are_returned_in_presentation_order(tmp_path):
    path = make_video(tmp_path / "b.mp4", num_frames=60, gop=20, bframes=3)
    with av.open(str(path)) as c:  # the test only means something if packets are reordered
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert pts != sorted(pts)
    rng = random.Random(1)
    requests = [rng.sample(range(70), 8) for _ in range(6)] + [list(range(60))]
    assert_same_as_sequential(path, requests)
    with open_video(path) as reader:
        for wanted in requests[:6]:
            assert indices_of(reader.get_frames(wanted)) == [min(i, 59) for i in wanted]


def test_order_duplicates_and_clamping(tmp_path):
    path = make_video(tmp_path / "c.mp4", num_frames=10)
    with open_video(path) as reader:
        assert indices_of(reader.get_frames([5, 2, 5, 0, 2])) == [5, 2, 5, 0, 2]
        assert indices_of(reader.get_frames([8, 9, 10, 15, 1000])) == [8, 9, 9, 9, 9]
        assert reader.get_frames([]).shape == (0, 3, 64, 96)
        with pytest.raises(ValueError):
            reader.get_frames([3, -1])


def test_closed_reader_refuses(tmp_path):
    reader = open_video(make_video(tmp_path / "c.mp4", num_frames=4))
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.get_frames([1])


def test_one_frame_video(tmp_path):
    path = make_video(tmp_path / "one.mp4", num_frames=1)
    with open_video(path) as reader:
        assert reader.info.num_frames == 1
        assert indices_of(reader.get_frames([0, 0, 5, 127])) == [0, 0, 0, 0]


def test_reader_is_reusable_in_any_order(tmp_path):
    path = make_video(tmp_path / "r.mkv", num_frames=90, gop=15)
    with open_video(path) as reader:
        for wanted in ([80, 81, 82], [3, 4], [40], [89, 0], [45, 46, 47]):
            assert indices_of(reader.get_frames(wanted)) == wanted


# ---- planning -----------------------------------------------------------------------


def test_plan_reads_seeks_only_when_it_saves_decoding():
    keys = [0, 50, 100, 150]
    # Fresh decoder: seek; the next frames follow closely: decode on.
    assert plan_reads([3, 5, 9], keys, None, 12) == [(0, 3), (None, 5), (None, 9)]
    # Far keyframe ahead of the decoder: seek to it rather than decode 100 frames.
    assert plan_reads([10, 120], keys, None, 12) == [(0, 10), (100, 120)]
    # Keyframe only a few frames ahead: cheaper to keep decoding.
    assert plan_reads([55], keys, 45, 12) == [(None, 55)]
    assert plan_reads([55], keys, 30, 12) == [(50, 55)]
    # A frame behind the decoder always needs a seek (to the keyframe before it).
    assert plan_reads([20], keys, 60, 12) == [(0, 20)]
    assert plan_reads([160], keys, 161, 12) == [(150, 160)]


def test_sparse_requests_decode_fewer_frames(tmp_path):
    path = make_video(tmp_path / "long.mp4", num_frames=120, gop=10, size=(64, 48))
    with open_video(path) as reader:
        start = reader.frames_decoded
        wanted = [5, 60, 115]
        assert indices_of(reader.get_frames(wanted)) == wanted
        sparse = reader.frames_decoded - start
    # Sequential decoding needs all 116 frames up to 115; seeking needs ~3 short runs.
    assert sparse < 40
    with PyAVReader(path, seek_overhead=10**6) as never_seeks:
        never_seeks.get_frames(wanted)
        assert never_seeks.frames_decoded >= sparse
    # Dense requests in one keyframe interval are decoded in one forward pass.
    with open_video(path) as reader:
        before = reader.frames_decoded
        reader.get_frames(list(range(20, 30)))
        assert reader.frames_decoded - before <= 10 + 10  # at most one GOP to reach 20


@pytest.mark.parametrize("suffix", ["avi", "mkv"])
def test_intra_only_streams_decode_only_the_wanted_frames(tmp_path, suffix):
    path = make_video(tmp_path / f"mj.{suffix}", num_frames=90, codec="mjpeg", size=(64, 48))
    expected = decode_all(path)
    wanted = [5, 16, 27, 38, 49, 60, 71, 82]  # 11 apart: within the seek threshold
    with open_video(path) as reader:
        opened = reader.frames_decoded  # frame 0, decoded on open for size and rotation
        frames = reader.get_frames(wanted)
        assert reader.frames_decoded - opened == len(wanted)
        assert indices_of(frames) == wanted
        for got, i in zip(frames, wanted):
            assert np.array_equal(got.permute(1, 2, 0).numpy(), expected[i])
        # Going back, then forward again past frames already skipped.
        back = [2, 3, 88, 40]
        before = reader.frames_decoded
        assert indices_of(reader.get_frames(back)) == back
        assert reader.frames_decoded - before == len(back)


def test_decoder_threads_follow_the_frame_size(tmp_path):
    small = make_video(tmp_path / "small.mp4", num_frames=4, size=(320, 240))
    large = make_video(tmp_path / "large.mp4", num_frames=2, size=(1920, 1080))
    mjpeg = make_video(tmp_path / "mj.avi", num_frames=4, codec="mjpeg", size=(1920, 1080))
    kinds = {}
    for name, path in (("small", small), ("large", large), ("mjpeg", mjpeg)):
        with PyAVReader(path) as reader:
            kinds[name] = reader._stream.codec_context.thread_type.name
    assert kinds == {"small": "NONE", "large": "AUTO", "mjpeg": "SLICE"}


def test_frames_come_back_in_one_channels_last_buffer(tmp_path):
    path = make_video(tmp_path / "c.mp4", num_frames=12, size=(64, 48))
    with open_video(path) as reader:
        frames = reader.get_frames([3, 1, 3])
    assert frames.shape == (3, 3, 48, 64) and frames.dtype == torch.uint8
    assert frames.is_contiguous(memory_format=torch.channels_last)
    assert indices_of(frames) == [3, 1, 3]


def test_without_threads_or_seeking_same_frames(tmp_path):
    path = make_video(tmp_path / "t.mp4", num_frames=50, gop=12, bframes=2)
    wanted = [49, 3, 25, 26, 12]
    outs = []
    for kw in ({}, {"threads": False}, {"seek_overhead": 0}, {"seek_overhead": 10**6}):
        with PyAVReader(path, **kw) as reader:
            outs.append(reader.get_frames(wanted))
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert indices_of(outs[0]) == wanted


# ---- metadata -----------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, degrees):
    plain = make_video(tmp_path / "plain.mp4", num_frames=6, size=(96, 64))
    rotated = tmp_path / f"rot{degrees}.mp4"
    shutil.copy(plain, rotated)
    set_mp4_rotation(rotated, degrees)
    with open_video(rotated) as reader:
        info = reader.info
        assert info.rotation == degrees
        assert (info.width, info.height) == ((64, 96) if degrees % 180 else (96, 64))
        frames = reader.get_frames([0, 4])
    assert frames.shape[2:] == (info.height, info.width)
    upright = decode_all(plain)
    for frame, i in zip(frames, [0, 4]):
        # np.rot90 with k=-1 turns clockwise, as players do for a "rotate=90" tag.
        expected = np.rot90(upright[i], k=-degrees // 90)
        assert np.array_equal(frame.permute(1, 2, 0).numpy(), expected)
        # Undoing the rotation gives back a readable, upright index code.
        assert frame_index_of(torch.rot90(frame, k=degrees // 90, dims=(1, 2))) == i
    if degrees == 90:  # the red top-left mark ends up top-right after a clockwise turn
        r, g, _ = frames[0][:, 2, -3].tolist()
        assert r > 150 and g < 100


PIX_FMTS = [  # (pix_fmt, codec, suffix): FFmpeg's H.264 decoder shows gray as yuv420p
    ("gray", "ffv1", "mkv"),
    ("gray16le", "ffv1", "mkv"),
    ("yuv444p", "libx264", "mp4"),
    ("yuv420p10le", "libx264", "mp4"),
    ("yuv422p", "libx264", "mp4"),
    ("rgb24", "png", "mov"),
]


@pytest.mark.parametrize("pix_fmt,codec,suffix", PIX_FMTS, ids=[p[0] for p in PIX_FMTS])
def test_pixel_formats_become_rgb(tmp_path, pix_fmt, codec, suffix):
    need(codec)
    path = make_video(tmp_path / f"{pix_fmt}.{suffix}", num_frames=12, pix_fmt=pix_fmt, codec=codec)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == pix_fmt
    with open_video(path) as reader:
        frames = reader.get_frames([0, 11, 6])
    assert frames.dtype == torch.uint8 and frames.shape == (3, 3, 64, 96)
    assert indices_of(frames) == [0, 11, 6]
    if pix_fmt.startswith("gray"):
        assert torch.equal(frames[:, 0], frames[:, 1]) and torch.equal(frames[:, 1], frames[:, 2])


def test_mjpeg_yuvj422p(tmp_path):
    path = make_video(tmp_path / "mj.avi", num_frames=15, fps=15, codec="mjpeg", pix_fmt="yuvj422p")
    with open_video(path) as reader:
        assert reader.info.fps == pytest.approx(15) and reader.info.codec == "mjpeg"
        assert indices_of(reader.get_frames([14, 2])) == [14, 2]


@pytest.mark.parametrize("suffix,codec", [("mkv", "libx264"), ("flv", "flv")])
def test_wrong_declared_fps_uses_timestamps(tmp_path, suffix, codec):
    # Declared 25 fps, but frames really are 100 ms apart (10 fps).
    path = make_video(tmp_path / f"w.{suffix}", num_frames=20, fps=25, codec=codec,
                      timestamps=[100 * i for i in range(20)])
    with av.open(str(path)) as c:
        assert float(c.streams.video[0].average_rate) == pytest.approx(25)
    info = read_info(path)
    assert info.fps == pytest.approx(10, rel=0.01)
    assert info.num_frames == 20 and info.duration == pytest.approx(2.0, rel=0.01)


def test_frame_count_missing_from_metadata(tmp_path):
    path = make_video(tmp_path / "n.webm", num_frames=33, fps=30, codec="libvpx-vp9")
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # WebM stores no frame count
    assert read_info(path).num_frames == 33


def test_override_fps(tmp_path):
    path = make_video(tmp_path / "o.mp4", num_frames=20, fps=20)
    info = open_video(path, fps=5).info
    assert info.fps == 5 and info.duration == pytest.approx(4.0)


def test_choose_fps_rules():
    assert choose_fps([25, 25], 25.0) == 25
    assert choose_fps([None, 0, 30], None) == 30
    assert choose_fps([90000, 1 / 1001], 29.97) == pytest.approx(29.97)  # absurd rates
    assert choose_fps([25], 10.0) == 10  # contradicted by the timestamps
    assert choose_fps([None], None) == 30.0 and choose_fps([], None, default=12) == 12
    # The median interval ignores one dropped frame (80 -> 200).
    assert fps_from_timestamps([0, 40, 80, 120, 200], Fraction(1, 1000)) == pytest.approx(25)
    assert fps_from_timestamps([7], Fraction(1, 1000)) is None


def test_video_extensions():
    assert {".mp4", ".avi", ".mkv", ".webm", ".mov", ".ts", ".mjpeg"} <= VIDEO_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in VIDEO_EXTENSIONS)


# ---- bad input --------------------------------------------------------------------


def _mp4_boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    boxes, pos = {}, 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        boxes[kind] = (pos, pos + size)
        pos += size
    return boxes


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = make_video(tmp / "good.mp4", num_frames=40, gop=10)
    data = good.read_bytes()
    moov_at = _mp4_boxes(data)[b"moov"][0]
    (tmp / "no_moov.mp4").write_bytes(data[:moov_at])  # download cut before the index
    (tmp / "text.mp4").write_text("this is not a video\n" * 50)
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "notframes").mkdir()
    (tmp / "notframes" / "readme.txt").write_text("hi")
    make_audio_only(tmp / "audio.mp4")
    make_video(tmp / "zero.avi", num_frames=0, codec="mpeg4")
    return {
        "missing": (tmp / "missing.mp4", "not found"),
        "directory": (tmp / "notframes", "not a frame folder"),
        "empty": (tmp / "empty.mp4", "empty"),
        "no moov": (tmp / "no_moov.mp4", "truncated"),
        "text": (tmp / "text.mp4", "not a video"),
        "audio only": (tmp / "audio.mp4", "audio only"),
        "no frames": (tmp / "zero.avi", "no frames"),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "no moov", "text",
                                  "audio only", "no frames"])
def test_bad_input_raises_video_decode_error(bad_inputs, case):
    path, words = bad_inputs[case]
    for fn in (open_video, read_info):
        with pytest.raises(VideoDecodeError) as err:
            fn(path)
        assert type(err.value) is VideoDecodeError
        assert str(path) in str(err.value) and words in err.value.reason
        assert len(err.value.reason) < 100 and "\n" not in err.value.reason


def test_cut_off_frame_data_counts_what_is_there(tmp_path):
    path = make_video(tmp_path / "fs.mp4", num_frames=60, gop=12, size=(160, 120),
                      faststart=True, options={"crf": "5"})  # index first, then frames
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with av.open(str(cut)) as c:
        assert c.streams.video[0].frames == 60  # the index still promises 60 frames
    with open_video(cut) as reader:
        n = reader.info.num_frames
        assert 0 < n < 60
        assert indices_of(reader.get_frames([0, n // 2, n - 1, 59])) == [0, n // 2, n - 1, n - 1]


def test_undecodable_frame_raises(tmp_path):
    path = make_video(tmp_path / "z.mp4", num_frames=60, gop=12, faststart=True)
    data = bytearray(path.read_bytes())
    start, end = _mp4_boxes(bytes(data))[b"mdat"]
    mid = (start + end) // 2
    data[mid:end] = bytes(end - mid)  # zero the second half of the frame data
    broken = tmp_path / "zeroed.mp4"
    broken.write_bytes(bytes(data))
    with open_video(broken) as reader:
        assert reader.info.num_frames == 60  # the packets are all there...
        assert indices_of(reader.get_frames([0, 5])) == [0, 5]
        with pytest.raises(VideoDecodeError, match="could not be decoded"):
            reader.get_frames([59])  # ...but their data is gone


# ---- real videos from ../shared/videos ------------------------------------------------

SHARED = shared_videos_dir()
REAL = [
    ("demo.mp4", 280, 28.0, (340, 256), "h264"),
    ("test.mp4", 300, 30.0, (340, 256), "h264"),
    ("test.avi", 164, 25.0, (320, 240), "mpeg4"),  # MP3 audio; packed B-frames
    ("part_0.mp4", 32, 30.0, (340, 256), "h264"),
]


@pytest.mark.parametrize("name,frames,fps,size,codec", REAL, ids=[r[0] for r in REAL])
def test_real_videos(name, frames, fps, size, codec):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    info = read_info(path)
    assert (info.num_frames, (info.width, info.height), info.codec) == (frames, size, codec)
    assert info.fps == pytest.approx(fps) and info.duration == pytest.approx(frames / fps)
    rng = random.Random(name)
    segments = [int(frames / 8 * (k + 0.5)) for k in range(8)]
    dense = [min(s + 16 * k, frames - 1) for s in (rng.randrange(frames),) for k in range(8)]
    # [3] first: in test.avi, frames 2 and 3 come out of the decoder with swapped pts.
    requests = [[3], segments, dense, rng.sample(range(frames), 8), [2, 3], [frames + 5]]
    assert_same_as_sequential(path, requests)
