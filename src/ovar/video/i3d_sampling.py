"""Text4Vis's dense ("I3D-style") sampling: T frames ``128 // T`` apart in a 128-frame window.

The ``i3d[:T]`` rule of ``data.sampling`` (see :func:`ovar.video.sampling.parse_sampling`).
Unlike EVL's ``TxS`` windows, indices past the end of a short video wrap around to its
start (``mod len``) instead of repeating the last frame, and the test clips start at
Text4Vis's positions ``c * floor(max(0, len - 128) / (N - 1))``: the first clip at frame 0,
the others a whole number of frames apart, so the last clip may stop short of the end.
"""

from __future__ import annotations

import torch

WINDOW = 128  # Text4Vis's sample_range


def i3d_indices(num_frames: int, num_frames_per_clip: int, *, train: bool,
                generator: torch.Generator | None = None, num_clips: int = 1, clip: int = 0,
                window: int = WINDOW) -> list[int]:
    """Frame indices (0-based) of one clip under Text4Vis's dense rule.

    Training starts the window at a uniform integer in ``[0, len - window - 1]`` (0 when
    the video has at most ``window + 1`` frames, as the original's ``randint(0, pos - 1)``).
    Testing starts clip ``c`` of ``N`` at ``c * ((max(0, len - window)) // (N - 1))``; one
    clip starts at 0 (the original divides by zero there).  Frame ``k`` of the clip is
    ``(start + k * (window // T)) % len``.
    """
    for name, value in (("num_frames", num_frames), ("num_frames_per_clip", num_frames_per_clip),
                        ("num_clips", num_clips), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(clip, bool) or not isinstance(clip, int) or not 0 <= clip < num_clips:
        raise ValueError(f"clip must be an int in [0, {num_clips - 1}], got {clip!r}")
    interval = window // num_frames_per_clip
    if train:
        positions = max(1, 1 + num_frames - window)
        start = 0 if positions == 1 else int(torch.randint(positions - 1, (), generator=generator))
    elif num_clips == 1:
        start = 0
    else:
        start = clip * (max(0, num_frames - window) // (num_clips - 1))
    return [(start + k * interval) % num_frames for k in range(num_frames_per_clip)]
