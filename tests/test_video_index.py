"""The packet table read from an AVI's index instead of demuxing every packet."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from ovar.video import open_video
from ovar.video.decode import PyAVReader
from ovar.video.intra import available_cores
from ovar.video.packets import demux_table, index_table
from videogen import decode_all, frame_index_of, has_encoder, make_video


def need(codec: str) -> None:
    if not has_encoder(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")


def tables(path):
    with av.open(str(path)) as c:
        indexed = index_table(c, c.streams.video[0], str(path))
    with av.open(str(path)) as c:
        demuxed = demux_table(c, c.streams.video[0])
    return indexed, demuxed


def assert_frames(path, requests):
    ref = decode_all(path)
    with open_video(path) as reader:
        assert reader.info.num_frames == len(ref)
        for wanted in requests:
            got = reader.get_frames(wanted)
            assert [frame_index_of(f) for f in got] == [min(i, len(ref) - 1) for i in wanted]
            for i, frame in zip(wanted, got):
                assert np.array_equal(frame.permute(1, 2, 0).numpy(), ref[min(i, len(ref) - 1)])


def test_intra_avi_index_matches_the_demuxed_packets(tmp_path):
    need("mjpeg")
    path = make_video(tmp_path / "m.avi", num_frames=37, codec="mjpeg", size=(80, 48))
    indexed, demuxed = tables(path)
    assert indexed is not None and indexed.from_index and not demuxed.from_index
    assert indexed.pts == demuxed.pts == list(range(37))
    assert indexed.key_pts == demuxed.key_pts
    assert indexed.first_packet == demuxed.first_packet


def test_indexed_intra_avi_decodes_only_the_wanted_frames(tmp_path):
    need("mjpeg")
    path = make_video(tmp_path / "m.avi", num_frames=70, codec="mjpeg", size=(80, 48))
    with open_video(path) as reader:
        assert reader.frames_decoded == 0  # size from the header: nothing decoded on open
        assert (reader.info.width, reader.info.height, reader.info.num_frames) == (80, 48, 70)
        reader.get_frames([4, 5, 33, 69])
        assert reader.frames_decoded == 4
    # Forward, backward, neighbours, repeats and past the end, bit for bit.
    assert_frames(path, [[4, 5, 33, 69], [0, 1, 2], [68, 3, 3], [75]])


def test_index_not_used_where_timestamps_may_be_reordered(tmp_path):
    need("mpeg4")
    # Several keyframes and B-frames: index (decode) timestamps differ from pts.
    gop = make_video(tmp_path / "g.avi", num_frames=40, codec="mpeg4", gop=12, bframes=2)
    assert tables(gop)[0] is None
    mp4 = make_video(tmp_path / "g.mp4", num_frames=20)
    assert tables(mp4)[0] is None  # only AVI: other indexes hold decode timestamps
    assert_frames(gop, [[3, 17, 39], [1]])


def test_counting_mode_avi_from_the_index(tmp_path):
    need("mpeg4")
    # One keyframe and B-frames: read by decoding from the start and counting.
    path = make_video(tmp_path / "c.avi", num_frames=45, codec="mpeg4", gop=300, bframes=2)
    indexed, demuxed = tables(path)
    assert indexed is not None and len(indexed.pts) == len(demuxed.pts) == 45
    assert indexed.first_packet is None  # learnt on the first run
    # Backward requests rewind to the first packet learnt on the way.
    assert_frames(path, [[10, 30], [2, 44], [0], [20, 21]])


def test_avi_cut_short_loses_its_index_and_is_demuxed(tmp_path):
    need("mjpeg")
    path = make_video(tmp_path / "m.avi", num_frames=50, codec="mjpeg", size=(80, 48))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 5])
    indexed, demuxed = tables(cut)
    assert indexed is None and 0 < len(demuxed.pts) < 50
    with open_video(cut) as reader:
        n = reader.info.num_frames
        assert n == len(demuxed.pts)
        got = reader.get_frames([1, n - 1])
        assert [frame_index_of(f) for f in got] == [1, n - 1]


def test_parallel_intra_decoding_gives_the_serial_frames(tmp_path):
    need("mjpeg")
    path = make_video(tmp_path / "m.avi", num_frames=60, codec="mjpeg", size=(96, 64))
    wanted = [59, 1, 2, 17, 30, 31, 44, 58, 8]
    with PyAVReader(path) as parallel, PyAVReader(path, threads=False) as serial:
        if available_cores() >= 2:
            assert parallel._parallel is not None  # 2+ cores: the frames are decoded side by side
        assert serial._parallel is None
        for request in (wanted, wanted[:4], [5, 5, 5, 5, 6]):
            a, b = parallel.get_frames(request), serial.get_frames(request)
            assert torch.equal(a, b)
            assert [frame_index_of(f) for f in a] == request
        # Each wanted frame decoded once per request (the serial reader also reuses the
        # frame it decoded last: 59, asked for again by the second request).
        assert serial.frames_decoded == 9 + 3 + 2
        if parallel._parallel is not None:
            assert parallel.frames_decoded == 9 + 4 + 2


class _ReaderKinds(torch.utils.data.Dataset):
    """Whether a reader opened in this process decodes side by side."""

    def __init__(self, path) -> None:
        self.path = path

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> bool:
        with PyAVReader(self.path) as reader:
            return reader._parallel is not None


def test_loader_workers_decode_serially(tmp_path):
    """Four loader workers with four decoding threads each would ask 16 threads of the cores."""
    need("mjpeg")
    if available_cores() < 2:
        pytest.skip("one core: never parallel")
    path = make_video(tmp_path / "m.avi", num_frames=12, codec="mjpeg", size=(64, 48))
    assert _ReaderKinds(path)[0]  # in the main process: side by side
    loader = torch.utils.data.DataLoader(_ReaderKinds(path), batch_size=None, num_workers=1)
    assert list(loader) == [False]
