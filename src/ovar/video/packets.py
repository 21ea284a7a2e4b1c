"""Opening a video file, and the packet table of its video stream: every frame's
timestamp and the keyframes.

:class:`~ovar.video.decode.PyAVReader` plans its reads from this table.  It normally
comes from demuxing every packet once (no decoding), which reads all of the stream's
data.  When the container's own index already lists every frame (AVI's ``idx1``), the
table is read from the index instead: no packet data is read, and the demuxer stays at
the first packet, so decoding can start without a rewind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import av

from ..errors import VideoDecodeError


def open_container(path: str) -> av.container.InputContainer:
    """``av.open`` with every failure turned into a short :class:`VideoDecodeError`."""
    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise VideoDecodeError(path, "file not found") from None
    except av.error.PermissionError:
        raise VideoDecodeError(path, "permission denied") from None
    except av.error.EOFError:
        reason = "truncated or corrupt file: ends before any video data"
        raise VideoDecodeError(path, reason) from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        try:
            with open(path, "rb") as fh:
                head = fh.read(12)
        except OSError:
            head = b""
        if head[4:8] == b"ftyp":
            # An MP4/MOV header without its index: the download/copy was cut short.
            reason = "truncated or corrupt file: MP4 index (moov box) missing"
        else:
            detail = getattr(exc, "strerror", None) or str(exc)
            reason = f"not a video file ({detail})"
        raise VideoDecodeError(path, reason) from None


@dataclass
class PacketTable:
    """What one pass over the stream's packets learned."""

    pts: list[int | None]  # presentation timestamp of every frame's packet, in file order
    key_pts: list[int | None]  # of the keyframes
    key_dts: dict[int | None, int | None]  # keyframe pts -> its dts (for seeking)
    first_packet: tuple[int | None, int | None] | None  # (pts, dts), to recognise a rewind
    discarded: set[int] = field(default_factory=set)  # pts decoded but never shown (edit lists)
    from_index: bool = False  # read from the container's index: nothing demuxed yet


def demux_table(container: av.container.InputContainer, stream: av.VideoStream) -> PacketTable:
    """Demux every packet of ``stream`` (no decoding); the demuxer ends at the end of file."""
    table = PacketTable(pts=[], key_pts=[], key_dts={}, first_packet=None)
    try:
        for pkt in container.demux(stream):
            if pkt.size == 0 or pkt.is_corrupt:
                continue  # the end-of-stream marker, or a packet cut short by truncation
            if table.first_packet is None:
                table.first_packet = (pkt.pts, pkt.dts)
            if pkt.is_discard:  # before an edit list's start: decoded, never shown
                if pkt.pts is not None:
                    table.discarded.add(pkt.pts)
                continue
            table.pts.append(pkt.pts)
            if pkt.is_keyframe:
                table.key_pts.append(pkt.pts)
                table.key_dts[pkt.pts] = pkt.dts
    except av.error.FFmpegError:
        pass  # a cut-off file: keep the packets that really are there
    return table


def index_table(container: av.container.InputContainer, stream: av.VideoStream,
                path: str) -> PacketTable | None:
    """The table from an AVI's index, or None when the index cannot stand in for a scan.

    AVI index timestamps are decode timestamps, equal to presentation ones only when no
    frame is reordered.  So the index is used for intra-only streams (every entry a
    keyframe: no reordering is possible) and for streams whose only keyframe is the first
    frame (read by decoding from the start and counting, where only the count matters).
    It must also list exactly the frames the header declares, all inside the file: an AVI
    cut short loses its index (stored at the end), and a partial one is not trusted.
    """
    if container.format.name != "avi":
        return None
    entries = stream.index_entries
    n = len(entries)
    if n == 0 or n != (stream.frames or 0):
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    pts: list[int | None] = []
    keys: list[int] = []
    last = None
    for e in entries:
        ts = e.timestamp
        if e.size <= 0 or e.pos + e.size > size or (last is not None and ts <= last):
            return None
        last = ts
        pts.append(ts)
        if e.is_keyframe:
            keys.append(ts)
    if len(keys) == n:
        return PacketTable(pts=pts, key_pts=list(keys), key_dts={k: k for k in keys},
                           first_packet=(pts[0], pts[0]), from_index=True)
    if keys == [pts[0]]:
        # Counting mode: the frames' timestamps are never used, and the first packet's pts
        # (which may differ from its dts) is recorded when it is first demuxed.
        return PacketTable(pts=pts, key_pts=[pts[0]], key_dts={pts[0]: pts[0]},
                           first_packet=None, from_index=True)
    return None
