"""Read chosen frames of a video file with PyAV, decoding only what they need.

On open the video stream's packets are demuxed once (no decoding) to learn every
frame's pts, the keyframes and the real frame count.  A request is then served by
:func:`plan_reads`: walk the sorted wanted frames, and to reach the next one either keep
decoding forward or seek to the last keyframe before it, whichever decodes fewer frames.
Decoded frames are identified by pts (so B-frame reordering is harmless); a stream
whose timestamps turn out unusable falls back to decoding from the start and counting.
On the way to a wanted H.264/HEVC frame, frames that nothing references are skipped.
"""

from __future__ import annotations

import bisect
import itertools
import os
from pathlib import Path
from typing import Iterator

import av
from av.video.reformatter import VideoReformatter
import numpy as np

from ..errors import VideoDecodeError
from .frames import FrameFolderReader, is_frame_folder
from .info import VideoInfo, VideoReader, choose_fps, fps_from_timestamps
from .packets import demux_table, index_table
from .packets import open_container as _open_container
from .intra import MIN_FRAMES_PER_DECODER, ParallelIntraDecoder, fetch_packets

# Seeking costs a demuxer seek, a decoder flush and refilling the threaded decoder's
# pipeline.  Measured on 340x256 and 1280x720 H.264 (benchmarks/bench_decode.py), that is
# worth about this many decoded frames: seek only when it skips more than this.
SEEK_OVERHEAD_FRAMES = 12
# In an intra-only stream whose container index lists every packet (AVI), seek to a
# wanted frame when more than this many unwanted packets lie before it: demuxing one costs
# about as much as the seek (~5-10 us for 20 kB MJPEG packets).
INDEXED_SEEK_OVERHEAD = 1
# Frame+slice threaded decoding (FFmpeg's "AUTO"), for frames of at least this many pixels.
THREADED_DECODING = True
THREADS_MIN_PIXELS = 1920 * 1080

# Codecs whose decoders can skip non-reference frames ("skip_frame=NONREF") without
# changing any other frame; frames decoded only to reach a wanted one are skipped when
# nothing references them (~30% of H.264 decoding time with B-frames).
SKIP_NONREF_CODECS = frozenset({"h264", "hevc"})

# The pseudo-keyframe at presentation index 0 means "the start of the file".
_START = 0


class _PtsMismatch(Exception):
    """Decoded frames' pts do not follow the demuxed ones (e.g. packed B-frames in AVI)."""


def plan_reads(indices: list[int], keyframes: list[int], position: int | None,
               seek_overhead: int = SEEK_OVERHEAD_FRAMES) -> list[tuple[int | None, int]]:
    """Plan how to reach each of the sorted unique ``indices``.

    ``keyframes`` are sorted presentation indices where decoding may start (0 first);
    ``position`` is the index the decoder would output next, or None when it must
    restart.  Returns ``(keyframe or None, index)`` steps: seek to the keyframe first, or
    (None) keep decoding forward.  Seeking is chosen when the wanted frame lies behind the
    decoder, or when the keyframe is more than ``seek_overhead`` frames ahead of it.
    """
    steps: list[tuple[int | None, int]] = []
    pos = position
    for f in indices:
        key = keyframes[max(0, bisect.bisect_right(keyframes, f) - 1)]
        if pos is None or f < pos or key - pos > seek_overhead:
            steps.append((key, f))
        else:
            steps.append((None, f))
        pos = f + 1
    return steps


class PyAVReader(VideoReader):
    """A video file read through PyAV with keyframe-aware seeking.

    ``frames_decoded`` counts every frame the decoder produced, including those decoded
    only to reach a wanted one.  ``fps`` overrides the measured rate; ``seek_overhead``
    and ``threads`` default to :data:`SEEK_OVERHEAD_FRAMES` and :data:`THREADED_DECODING`.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None,
                 seek_overhead: int | None = None, threads: bool | None = None) -> None:
        self.path = str(path)
        self.seek_overhead = SEEK_OVERHEAD_FRAMES if seek_overhead is None else seek_overhead
        self.frames_decoded = 0
        self._closed = False
        self._threads = THREADED_DECODING if threads is None else threads
        self._intra = False  # every frame a keyframe (MJPEG, ProRes, ...): set by _scan
        self._reformatter = VideoReformatter()
        self._container = _open_container(self.path)
        try:
            self._stream = self._pick_stream()
            self._configure(self._stream)
            self.info = self._scan(fps)
        except BaseException:
            self._container.close()
            raise

    # ---- opening -------------------------------------------------------------------

    def _pick_stream(self) -> av.VideoStream:
        c = self._container
        if c.format.name == "tty":  # FFmpeg renders any text file as an "ANSI art" video
            raise VideoDecodeError(self.path, "not a video file (plain text)")
        for s in c.streams.video:
            if not s.disposition & av.stream.Disposition.attached_pic:  # skip cover art
                return s
        raise VideoDecodeError(self.path, "no video stream (audio only)" if c.streams.audio
                               else "no video stream")

    def _configure(self, stream: av.VideoStream) -> None:
        cc = stream.codec_context
        # Frame threads (slice threads for multi-slice streams); "NONE" for comparisons.
        # Intra-only streams get slice threads only: frame threading delays each output
        # by a few packets, and their unwanted packets are never sent to the decoder.
        # Below full HD, threads cost more than they save: on 2 idle cores, 8 frames of a
        # 340x256 H.264 clip took 119 ms without and 165 ms with them, 640x360 VP9 275 vs
        # 346 ms, while 1080p broke even (857 vs 888 ms; benchmarks/bench_decode.py).
        if not self._threads:
            cc.thread_type = "NONE"
        elif self._intra:
            cc.thread_type = "SLICE"
        else:
            cc.thread_type = "AUTO" if cc.width * cc.height >= THREADS_MIN_PIXELS else "NONE"
        cc.thread_count = 0  # FFmpeg picks one per core

    def _scan(self, fps: float | None) -> VideoInfo:
        """Read the packet table (from the index, or by demuxing), then learn size and rotation."""
        vs = self._stream
        table = index_table(self._container, vs, self.path) or demux_table(self._container, vs)
        pts, key_pts, key_dts = table.pts, table.key_pts, table.key_dts
        self._discarded = table.discarded
        self._first_packet = table.first_packet
        # Nothing demuxed yet (table from the index): the first run starts where the
        # demuxer stands, without a rewind.
        self._fresh = self._indexed = table.from_index
        if not pts:
            raise VideoDecodeError(self.path, "video stream has no frames")

        self._num_frames = len(pts)
        usable = None not in pts and len(set(pts)) == len(pts)
        self._pts_mode = usable
        if usable:
            self._pts_sorted = sorted(pts)  # type: ignore[arg-type]
            self._index_of = {p: i for i, p in enumerate(self._pts_sorted)}
            self._keys = sorted({_START, *(self._index_of[p] for p in key_pts)})
            self._seek_ts = {self._index_of[p]: (p, key_dts[p]) for p in key_pts}
        else:
            self._keys = [_START]
        self._pos: int | None = None  # next presentation index the decoder will output
        self._frames: Iterator[av.VideoFrame] = iter(())
        self._last: tuple[int, av.VideoFrame] | None = None  # the frame decoded last
        # AVI stores no timestamps: FFmpeg synthesises them, and with packed B-frames they
        # mislabel decoded frames.  Elsewhere a frame missing from the output was lost
        # (corrupt data), not mislabelled.
        self._trust_pts = self._container.format.name != "avi"
        self._skip_ok = usable and self._trust_pts and vs.codec_context.name in SKIP_NONREF_CODECS
        # Every frame a keyframe: a frame needs only its own packet, so reaching a wanted
        # frame means demuxing past the others, never decoding them (nor seeking forward).
        self._intra = usable and len(key_pts) == len(pts)
        if self._intra:
            self._trust_pts = True  # no reordering is possible without inter frames
            self._configure(vs)
        elif not self._trust_pts and len(self._keys) == 1:
            # Nowhere to seek to: reading means decoding from the start, so count frames
            # rather than trust synthesised pts, which with packed B-frames fail only after
            # many frames were decoded (and then decoding restarts).
            self._pts_mode = False
        # Indexed intra-only frames are fetched one packet each: decode them side by side.
        self._parallel = (ParallelIntraDecoder.for_stream(vs)
                          if self._intra and self._indexed and self._threads else None)
        self._wanted_pts: set[int] = set()  # pts of this request's frames: never skipped
        self._skippable: set[int] = set()  # pts sent with skipping on, in the current run

        declared = int(vs.frames or 0) or None  # 0: the container does not say (MKV, WebM)
        measured = fps_from_timestamps(pts, vs.time_base) if usable else None  # type: ignore
        rate = fps or choose_fps([vs.average_rate, vs.guessed_rate, vs.base_rate], measured)
        codec = vs.codec_context.name
        del vs  # decoding frame 0 may reopen the file, which frees this stream object

        if self._fresh and self._intra:
            # An indexed AVI: the format has no display matrix, and every frame is coded
            # alone at the header's size, so no frame needs decoding yet.  (A frame of
            # another size would be scaled to this one by _to_rgb.)
            rot = 0.0
            self._raw_size = (self._stream.codec_context.width, self._stream.codec_context.height)
        else:
            try:
                first = self._fetch([0])[0]
            except VideoDecodeError:
                reason = "truncated or corrupt file: no frame decodes"
                raise VideoDecodeError(self.path, reason) from None
            rot = first.rotation  # counter-clockwise degrees from the display matrix
            self._raw_size = (first.width, first.height)
        self._rotation = int(round(-rot / 90.0)) % 4 * 90
        w, h = self._raw_size
        if self._rotation in (90, 270):
            w, h = h, w
        info = VideoInfo(path=self.path, num_frames=self._num_frames, fps=float(rate),
                         duration=self._num_frames / float(rate), width=w, height=h,
                         rotation=self._rotation, codec=codec, declared_frames=declared)
        return info  # a truncated file is flagged (info.truncated); callers decide how to report it

    # ---- positioning ---------------------------------------------------------------

    def _reopen(self) -> None:
        """Start over from a freshly opened file (always lands on the first packet)."""
        index = self._stream.index
        self._frames = iter(())  # never resume a generator over a closed container
        self._container.close()
        self._container = _open_container(self.path)
        self._stream = self._container.streams[index]
        self._configure(self._stream)
        self._start_run(self._container.demux(self._stream), None, _START)

    def _rewind(self) -> None:
        """Go back to the first packet; a seek is cheaper than reopening when it lands."""
        if self._fresh:  # nothing demuxed since opening: already there
            self._start_run(self._container.demux(self._stream), None, _START)
            return
        first_pts, first_dts = self._first_packet or (None, None)
        ts = first_dts if first_dts is not None else first_pts
        if ts is not None:
            try:
                self._container.seek(ts, backward=True, stream=self._stream)
                packets = self._container.demux(self._stream)
                pkt = next(packets, None)
                if pkt is not None and (pkt.pts, pkt.dts if first_pts is None else None) == (
                        first_pts, first_dts if first_pts is None else None):
                    self._start_run(packets, pkt, _START)
                    return
            except av.error.FFmpegError:
                pass
        self._reopen()

    def _seek(self, key: int) -> None:
        """Restart decoding at keyframe ``key`` (a presentation index), or earlier."""
        if key == _START or not self._pts_mode:
            self._rewind()
            return
        key_pts, key_dts = self._seek_ts[key]
        for ts in dict.fromkeys(t for t in (key_pts, key_dts) if t is not None):
            try:
                self._container.seek(ts, backward=True, stream=self._stream)
            except av.error.FFmpegError:
                continue
            packets = self._container.demux(self._stream)
            # Some demuxers (MPEG-PS/TS) land near, not on, a keyframe: skip to the next one.
            for pkt in packets:
                if pkt.size and pkt.is_keyframe and not pkt.is_discard:
                    landed = self._index_of.get(pkt.pts)
                    if landed is not None and landed <= key:
                        self._start_run(packets, pkt, landed)
                        return
                    break  # overshot the keyframe (or unknown packet): try another way
        self._rewind()

    def _start_run(self, packets: Iterator[av.Packet], first: av.Packet | None, key: int) -> None:
        self._fresh = False
        self._frames = self._decode_packets(packets, first)
        self._expect = key  # the next frame the decoder must output (after leading ones)
        self._started = False
        self._pos = key
        self._skippable = set()

    def _decode_packets(self, packets: Iterator[av.Packet],
                        first: av.Packet | None) -> Iterator[av.VideoFrame]:
        stream = self._stream
        cc = stream.codec_context
        skipping = False
        cc.skip_frame = "DEFAULT"
        head = (first,) if first is not None else ()
        try:
            for pkt in itertools.chain(head, packets):
                if pkt.is_corrupt:
                    continue  # also skipped by _scan; feeding it can lose good frames
                if self._first_packet is None and pkt.size:
                    # Not known from an index scan: this run started at the first packet.
                    self._first_packet = (pkt.pts, pkt.dts)
                if self._intra and pkt.pts not in self._wanted_pts:
                    continue  # an intra frame nothing needs: demuxed, never decoded
                if self._skip_ok:
                    # The decoder reads skip_frame when the packet is sent (also per
                    # thread with frame threading), so it can change packet by packet.
                    skip = pkt.pts not in self._wanted_pts
                    if skip:
                        self._skippable.add(pkt.pts)
                    if skip != skipping:
                        cc.skip_frame = "NONREF" if skip else "DEFAULT"
                        skipping = skip
                try:
                    frames = stream.decode(pkt)
                except av.error.FFmpegError:
                    continue  # a damaged packet: its frame goes missing
                yield from frames
        except av.error.FFmpegError:
            pass  # the demuxer hit the cut-off end of a truncated file
        try:
            yield from stream.decode(None)  # drain frames still inside the decoder
        except av.error.FFmpegError:
            pass

    # ---- decoding ------------------------------------------------------------------

    def _identify(self, frame: av.VideoFrame) -> int | None:
        """Presentation index of a decoded frame; None for a leading frame to ignore."""
        if not self._pts_mode:
            idx = self._expect
            self._expect += 1
            return idx
        if frame.pts in self._discarded:
            return None
        idx = self._index_of.get(frame.pts) if frame.pts is not None else None
        if idx is None:
            raise _PtsMismatch
        if idx < self._expect and not self._started:
            return None  # an open-GOP leading frame, shown before the keyframe we seeked to
        if idx < self._expect:
            raise _PtsMismatch  # out of order: the pts do not describe the output
        if idx > self._expect and not self._trust_pts:
            raise _PtsMismatch  # frames missing: suspect the synthesised timestamps
        # (With trusted pts, missing frames were skipped non-reference or corrupt ones.)
        self._started = True
        self._expect = idx + 1
        return idx

    def _advance_to(self, target: int) -> av.VideoFrame:
        """Decode forward until frame ``target`` comes out, and return it."""
        for frame in self._frames:
            self.frames_decoded += 1
            idx = self._identify(frame)
            if idx is None:
                continue
            self._pos = idx + 1
            if idx == target:
                self._last = (idx, frame)
                return frame
            if idx > target:
                break  # the decoder produced no picture for the target
        else:
            self._pos = None  # the decoder is drained: restart on the next request
        raise VideoDecodeError(self.path, f"truncated or corrupt file: frame {target} of "
                                          f"{self._num_frames} could not be decoded")

    def _to_rgb(self, frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
        """``frame`` as (H, W, 3) RGB; with ``reformatter`` (a decoding thread's own) single-threaded."""
        w, h = self._raw_size
        # Also converts any pixel format (gray, 10-bit, yuvj...) and a mid-stream size change.
        # One reformatter per reader keeps its scaler context: PyAV's to_ndarray builds a
        # new one per frame (1.0 -> 0.3 ms at 340x256, 15 -> 12 ms at 1080p).  Threads that
        # already convert frames side by side gain nothing from scaler threads (0.41 ->
        # 0.26 ms CPU per 640x480 frame with one).
        if reformatter is None:
            rgb = self._reformatter.reformat(frame, w, h, "rgb24").to_ndarray()
        else:
            rgb = reformatter.reformat(frame, w, h, "rgb24", threads=1).to_ndarray()
        if self._rotation:
            rgb = np.rot90(rgb, k=-self._rotation // 90)  # a view: copied once by get_frames
        return rgb

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        if self._closed:
            raise ValueError(f"{self.path}: reader is closed")
        if self._parallel is not None and len(indices) >= 2 * MIN_FRAMES_PER_DECODER:
            got = self._read_parallel(indices)
            if got is not None:
                return got
        return {i: self._to_rgb(frame) for i, frame in self._fetch(indices).items()}

    def _read_parallel(self, indices: list[int]) -> dict[int, np.ndarray] | None:
        """Demux each wanted packet of an indexed intra-only stream (a seek each), then decode
        them on several cores; None when a seek does not land on the wanted packet."""
        self._frames, self._pos, self._last, self._fresh = iter(()), None, None, False
        packets = fetch_packets(self._container, self._stream, [self._pts_sorted[i] for i in indices])
        if packets is None:
            return None
        rgbs = self._parallel.decode(packets, self._to_rgb)
        self.frames_decoded += sum(rgb is not None for rgb in rgbs)
        for i, rgb in zip(indices, rgbs):
            if rgb is None:
                raise VideoDecodeError(self.path, f"truncated or corrupt file: frame {i} of "
                                                  f"{self._num_frames} could not be decoded")
        return dict(zip(indices, rgbs))  # type: ignore[arg-type]

    def _fetch(self, indices: list[int]) -> dict[int, av.VideoFrame]:
        try:
            return self._fetch_planned(indices)
        except _PtsMismatch:
            # Timestamps cannot name the decoded frames: decode from the start and count.
            self._pts_mode = self._skip_ok = self._intra = False
            self._parallel = None
            self._keys = [_START]
            self._pos = None
            self._last = None
            return self._fetch_planned(indices)

    def _fetch_planned(self, indices: list[int]) -> dict[int, av.VideoFrame]:
        out: dict[int, av.VideoFrame] = {}
        if self._last is not None and self._last[0] in indices:
            # The frame just decoded is wanted again (e.g. frame 0, decoded on open).
            out[self._last[0]] = self._last[1]
            indices = [i for i in indices if i != self._last[0]]
        if self._skip_ok or self._intra:
            self._wanted_pts = {self._pts_sorted[i] for i in indices}
            if self._pos is not None and not self._wanted_pts.isdisjoint(self._skippable):
                self._pos = None  # a wanted frame may have been skipped already: restart
        # Moving forward through an intra-only stream only demuxes: never worth a seek,
        # unless the container's index holds every packet's position (then a seek is a
        # table look-up, cheaper than demuxing even a few unwanted packets).
        if self._intra:
            overhead = INDEXED_SEEK_OVERHEAD if self._indexed else len(self._keys)
        else:
            overhead = self.seek_overhead
        for key, target in plan_reads(indices, self._keys, self._pos, overhead):
            if key is not None:
                self._seek(key)
            out[target] = self._advance_to(target)
        return out

    def close(self) -> None:
        self._closed = True
        self._frames = iter(())
        self._last = None
        self._parallel = None  # its decoders
        self._container.close()


def open_video(path: str | os.PathLike, fps: float | None = None) -> VideoReader:
    """Open a video file (any format FFmpeg reads) or a folder of numbered frame images.

    ``fps`` overrides the frame rate; frame folders default to 30.0 fps without it.
    Raises :class:`~ovar.errors.VideoDecodeError` when the input cannot be read.
    """
    p = Path(path)
    if p.is_dir():
        if not is_frame_folder(p):
            raise VideoDecodeError(p, "directory is not a frame folder (no numbered images)")
        return FrameFolderReader(p, fps=fps)
    if not p.exists():
        raise VideoDecodeError(p, "file not found")
    if not p.is_file():
        raise VideoDecodeError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoDecodeError(p, "empty file (0 bytes)")
    return PyAVReader(p, fps=fps)


def read_info(path: str | os.PathLike, fps: float | None = None) -> VideoInfo:
    """Open ``path``, return its :class:`VideoInfo` and close it."""
    with open_video(path, fps=fps) as reader:
        return reader.info
