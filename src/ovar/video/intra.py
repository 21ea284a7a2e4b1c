"""Decoding the wanted frames of an intra-only stream on several cores at once.

FFmpeg's MJPEG decoder has no threading of its own, so an 8-frame clip of an MJPEG AVI
decodes on one core.  Its frames are independent, though: each is one packet that any
decoder can read.  :class:`ParallelIntraDecoder` gives each of a few threads its own
decoder and scaler and splits the packets among them; the decoding and the conversion
to RGB run without the GIL.  The decoders are fresh ones of the stream's
codec, so the frames are the ones the stream's decoder would give.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import av
from av.video.reformatter import VideoReformatter
import numpy as np

PARALLEL_CODECS = frozenset({"mjpeg"})
"""Intra-only codecs decoded in parallel: those whose decoder needs nothing from the
container but the packets (no extradata, no threading of their own)."""
MAX_DECODERS = 4
MIN_FRAMES_PER_DECODER = 2  # fewer and the hand-off costs more than the frame

_pool: tuple[int, ThreadPoolExecutor] | None = None


def _executor() -> ThreadPoolExecutor:
    """One pool per process: a pool inherited through fork (DataLoader workers) has no threads."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(MAX_DECODERS, thread_name_prefix="ovar-intra"))
    return _pool[1]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fetch_packets(container: av.container.InputContainer, stream: av.VideoStream,
                  pts: list[int]) -> list[av.Packet] | None:
    """The packet of each of ``pts``, by a seek each (cheap with a full index); None when a
    seek does not land on the wanted packet."""
    packets = []
    for wanted in pts:
        try:
            container.seek(wanted, backward=True, stream=stream)
        except av.error.FFmpegError:
            return None
        pkt = next((p for p in container.demux(stream) if p.size and not p.is_corrupt), None)
        if pkt is None or pkt.pts != wanted:
            return None
        packets.append(pkt)
    return packets


class ParallelIntraDecoder:
    """Decodes independent packets of one stream with up to ``decoders`` decoders at once."""

    def __init__(self, stream: av.VideoStream, decoders: int) -> None:
        self._codec = stream.codec_context.name
        self._contexts: list[av.CodecContext] = []  # own ones: a reopened file frees the stream's
        self._scalers: list[VideoReformatter] = []
        self.decoders = max(1, min(decoders, MAX_DECODERS))

    @classmethod
    def for_stream(cls, stream: av.VideoStream) -> ParallelIntraDecoder | None:
        """A parallel decoder when the codec allows it and there is more than one core, outside
        DataLoader workers (those already decode several videos at once on the cores)."""
        from torch.utils.data import get_worker_info

        cores = available_cores()
        if stream.codec_context.name not in PARALLEL_CODECS or cores < 2 or get_worker_info() is not None:
            return None
        return cls(stream, cores)

    def _context(self, k: int) -> av.CodecContext:
        while len(self._contexts) <= k:
            cc = av.CodecContext.create(self._codec, "r")
            cc.thread_type = "NONE"
            self._contexts.append(cc)
        return self._contexts[k]

    def _scaler(self, k: int) -> VideoReformatter:
        while len(self._scalers) <= k:
            self._scalers.append(VideoReformatter())
        return self._scalers[k]

    def decode(self, packets: list[av.Packet],
               convert: Callable[[av.VideoFrame, VideoReformatter], np.ndarray]) -> list[np.ndarray | None]:
        """Each packet's frame through ``convert`` (None where a packet gave no frame)."""
        k = max(1, min(self.decoders, len(packets) // MIN_FRAMES_PER_DECODER))
        out: list[np.ndarray | None] = [None] * len(packets)

        def work(j: int) -> None:
            cc, scaler = self._context(j), self._scaler(j)
            for slot in range(j, len(packets), k):
                try:
                    frames = cc.decode(packets[slot])
                except av.error.FFmpegError:
                    continue  # a damaged packet: reported by the caller as a missing frame
                if frames:
                    out[slot] = convert(frames[0], scaler)

        # Contexts and scalers are made here, not in the threads, so no two threads race.
        for j in range(k):
            self._context(j), self._scaler(j)
        futures = [_executor().submit(work, j) for j in range(1, k)]
        work(0)  # this thread takes a share too
        for future in futures:
            future.result()
        return out
