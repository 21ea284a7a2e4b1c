"""Test helpers that generate small videos and frame folders whose frames carry their index.

Every generated frame shows its index as a grid of black/white cells (one cell per bit,
plus two fixed sync cells), large enough to survive lossy compression and chroma
subsampling.  :func:`frame_index_of` reads the index back from a decoded ``(3, H, W)``
frame, so a test can check that a reader returned exactly the frames it asked for.
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# The code grid: 3 rows x 4 columns.  Cell 0 is always white, the last cell always black
# (they catch a frame that is rotated or mirrored); the 10 cells between hold the bits.
_ROWS, _COLS = 3, 4
_BITS = _ROWS * _COLS - 2
MAX_INDEX = (1 << _BITS) - 1


def shared_videos_dir() -> Path:
    """``$OVAR_SHARED_DIR/videos``, or ``shared/videos`` beside the repository."""
    shared = os.environ.get("OVAR_SHARED_DIR")
    return (Path(shared) if shared else REPO.parent / "shared") / "videos"


def has_encoder(name: str) -> bool:
    """Whether this PyAV build can encode with codec ``name``."""
    try:
        av.Codec(name, "w")
    except Exception:  # av raises UnknownCodecError (or ValueError on old versions)
        return False
    return True


def _cells(index: int) -> list[int]:
    bits = [(index >> b) & 1 for b in range(_BITS)]
    return [1, *bits, 0]


def frame_pattern(index: int, size: tuple[int, int]) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB picture of frame ``index`` at ``size = (width, height)``."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"frame index {index} outside 0..{MAX_INDEX}")
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    ys = np.linspace(0, h, _ROWS + 1).astype(int)
    xs = np.linspace(0, w, _COLS + 1).astype(int)
    for cell, on in enumerate(_cells(index)):
        r, c = divmod(cell, _COLS)
        img[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = 235 if on else 20
    # A red mark in the top-left corner shows orientation by eye and in colour tests.
    img[: max(2, h // 16), : max(2, w // 16)] = (220, 30, 30)
    return img


def frame_index_of(frame: torch.Tensor | np.ndarray) -> int:
    """Read back the index from a decoded ``(3, H, W)`` tensor (or ``(H, W, 3)`` array).

    Raises ValueError when the sync cells are wrong (a rotated, mirrored or foreign frame).
    """
    arr = frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    lum = arr.astype(np.float32).mean(axis=2)
    h, w = lum.shape
    ys = np.linspace(0, h, _ROWS + 1).astype(int)
    xs = np.linspace(0, w, _COLS + 1).astype(int)
    cells = []
    for cell in range(_ROWS * _COLS):
        r, c = divmod(cell, _COLS)
        # Read only the centre half of each cell: its edges blur under compression.
        y0, y1, x0, x1 = ys[r], ys[r + 1], xs[c], xs[c + 1]
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        cells.append(int(lum[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean() > 127))
    if cells[0] != 1 or cells[-1] != 0:
        raise ValueError("frame does not carry an upright index code")
    return sum(bit << b for b, bit in enumerate(cells[1:-1]))


def make_video(
    path: str | os.PathLike,
    num_frames: int = 24,
    fps: float | Fraction = 24,
    size: tuple[int, int] = (96, 64),
    codec: str = "libx264",
    pix_fmt: str | None = None,
    gop: int | None = None,
    bframes: int | None = None,
    audio: bool = False,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
    timestamps: Sequence[int] | None = None,
    faststart: bool = False,
) -> Path:
    """Encode ``num_frames`` index-coded frames; the container follows the file suffix.

    ``rotation`` (MP4/MOV only) writes a real display matrix into ``tkhd`` asking players
    to turn the picture that many degrees clockwise.  ``timestamps`` gives each frame's pts
    in milliseconds, so the real rate can differ from the declared ``fps``.
    ``num_frames=0`` writes a video stream without frames.
    ``faststart`` (MP4/MOV) puts the index (moov) before the frame data (mdat).
    """
    path = Path(path)
    if not has_encoder(codec):
        raise RuntimeError(f"encoder {codec} not available")
    rate = Fraction(fps).limit_denominator(1001)
    container_opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=container_opts) as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height = size
        if pix_fmt:
            vs.pix_fmt = pix_fmt
        elif codec == "mjpeg":
            vs.pix_fmt = "yuvj420p"
        if gop is not None:
            vs.codec_context.gop_size = gop
        if bframes is not None:
            vs.codec_context.max_b_frames = bframes
        opts = dict(options or {})
        if codec == "libx264":
            # Small, fast and deterministic; keep the requested GOP (no scene-cut keyframes).
            opts.setdefault("preset", "veryfast")
            opts.setdefault("crf", "18")
            opts.setdefault("x264-params", "scenecut=0")
        elif codec == "libx265":
            opts.setdefault("preset", "ultrafast")
            opts.setdefault("x265-params", "log-level=error")
        elif codec.startswith("libvpx"):
            opts.setdefault("deadline", "realtime")
            opts.setdefault("cpu-used", "8")
            opts.setdefault("crf", "20")
            opts.setdefault("b", "0")
        vs.options = opts
        if timestamps is not None:
            vs.codec_context.time_base = Fraction(1, 1000)
        if codec in ("mpeg4", "mpeg2video", "mpeg1video", "flv", "wmv2", "mjpeg"):
            vs.codec_context.qmax = 4  # keep the code cells crisp
        aus = None
        if audio:
            aus = out.add_stream("aac", rate=16000)
        out.start_encoding()  # writes the header even when no frame follows
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, size), format="rgb24")
            frame.pts = i if timestamps is None else int(timestamps[i])
            if timestamps is not None:
                frame.time_base = Fraction(1, 1000)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if aus is not None:
            _write_tone(out, aus, num_frames / float(rate))
    if rotation:
        set_mp4_rotation(path, rotation)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    sr = stream.codec_context.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chunk = 1024
    for start in range(0, len(samples), chunk):
        piece = samples[start : start + chunk][None, :]
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
        frame.sample_rate = sr
        frame.pts = start
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def make_audio_only(path: str | os.PathLike, seconds: float = 1.0) -> Path:
    """An audio-only file (container by suffix, e.g. ``.mp4`` or ``.m4a``)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        _write_tone(out, out.add_stream("aac", rate=16000), seconds)
    return path


def set_mp4_rotation(path: str | os.PathLike, degrees: int) -> None:
    """Rewrite the video track's ``tkhd`` matrix so players rotate it ``degrees`` clockwise.

    Uses the same matrices as FFmpeg's ``rotate`` tag (ISO/IEC 14496-12 8.3.2, 16.16 and
    2.30 fixed point).  Patched in place: the matrix has a fixed size.
    """
    data = bytearray(Path(path).read_bytes())
    one, w_one = 1 << 16, 1 << 30
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        width, height = vs.width, vs.height
    a, b, cc, d, tx, ty = {
        0: (1, 0, 0, 1, 0, 0),
        90: (0, 1, -1, 0, height, 0),
        180: (-1, 0, 0, -1, width, height),
        270: (0, -1, 1, 0, 0, width),
    }[degrees % 360]
    matrix = [a * one, b * one, 0, cc * one, d * one, 0, tx * one, ty * one, w_one]
    patched = 0
    for off in _find_boxes(data, b"tkhd"):
        version = data[off + 8]
        # header(8) version/flags(4) times+ids(20 or 32) reserved(8) layer..volume(8)
        moff = off + 8 + 4 + (32 if version == 1 else 20) + 8 + 8
        tw, th = struct.unpack(">II", data[moff + 36 : moff + 44])
        if tw == 0 and th == 0:
            continue  # an audio track
        data[moff : moff + 36] = struct.pack(">9i", *matrix)
        patched += 1
    if not patched:
        raise RuntimeError(f"no video tkhd box in {path}")
    Path(path).write_bytes(bytes(data))


def _find_boxes(data: bytes | bytearray, kind: bytes, start: int = 0, end: int | None = None):
    """Offsets of every ``kind`` box, descending into the container boxes on the way."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            break
        if typ == kind:
            yield pos
        elif typ in (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"):
            yield from _find_boxes(data, kind, pos + header, pos + size)
        pos += size


def make_frame_folder(
    directory: str | os.PathLike,
    num_frames: int,
    pattern: str = "img_{:05d}.jpg",
    start: int = 1,
    size: tuple[int, int] = (96, 64),
) -> Path:
    """Write ``num_frames`` index-coded images named ``pattern.format(start + i)``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        img = Image.fromarray(frame_pattern(i, size))
        name = pattern.format(start + i)
        if name.lower().endswith((".jpg", ".jpeg")):
            img.save(directory / name, quality=95)
        else:
            img.save(directory / name)
    return directory


def decode_all(path: str | os.PathLike) -> list[np.ndarray]:
    """Every frame of the first video stream, decoded sequentially by plain PyAV (HWC RGB)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
