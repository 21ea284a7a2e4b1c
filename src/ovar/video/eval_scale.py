"""Test-time spatial scale: how far the short side is resized before the evaluation crops.

The originals differ: ActionCLIP and Text4Vis resize the short side to 256 and crop 224
(a margin of 256/224), EVL, Open-VCLIP and FROSTER resize it to the crop size (224), so
a centre crop keeps the full short side.  ``data.test_scale`` overrides a recipe's
original:

* ``"256/224"`` -- short side 256, crops of 224, for every view layout;
* ``"256"`` -- short side 256, crops of the model's input size;
* ``"1=256/224,3=224/224"`` -- per view layout (number of spatial crops).
"""

from __future__ import annotations

import re

# Short side / crop size per spatial view layout (1 or 3 crops), by recipe or model kind.
ORIGINAL_RATIO: dict[str, dict[int, float]] = {
    "actionclip": {1: 256 / 224, 3: 256 / 224},  # val: scale input_size*256/224, centre crop
    "text4vis": {1: 256 / 224, 3: 256 / 224},  # GroupScale(256) + centre / full-res crops
    "evl": {1: 1.0, 3: 1.0},  # short side = 224, then centre or 3 long-side crops
    "open_vclip": {1: 1.0, 3: 1.0},  # PySlowFast test: short side = TEST_CROP_SIZE
    "froster": {1: 1.0, 3: 1.0},
}
# Test-time resize: PIL bicubic (ActionCLIP, Text4Vis) or torch bilinear without
# antialiasing (EVL's and PySlowFast's F.interpolate).
ORIGINAL_RESIZE: dict[str, tuple[str, bool]] = {
    "actionclip": ("bicubic", True),
    "text4vis": ("bicubic", True),
    "evl": ("bilinear", False),
    "open_vclip": ("bilinear", False),
    "froster": ("bilinear", False),
}

# Single-clip test frame of each TSN segment (ovar.video.sampling.segment_indices).
ORIGINAL_SEGMENT_POSITION: dict[str, str] = {
    "actionclip": "tsn_offset",  # int((k + 0.5) * n / T - 0.5)
    "text4vis": "start",  # int(k * n / T)
}
LAYOUTS = (1, 3, 5, 10)
_PART = re.compile(r"^(\d+)(?:/(\d+))?$")


def parse_eval_scale(text: str) -> dict[int, tuple[int, int | None]]:
    """``"256/224"`` or ``"1=256/224,3=224"`` -> ``{crops: (short_side, crop or None)}``.

    A value without a layout applies to every layout; a crop left out means the model's
    input size.  ValueError names the bad part.
    """
    out: dict[int, tuple[int, int | None]] = {}
    for part in str(text).replace(" ", "").split(","):
        layouts: tuple[int, ...] = LAYOUTS
        if "=" in part:
            head, _, part = part.partition("=")
            if head not in ("1", "3", "5", "10"):
                raise ValueError(f"test scale {text!r}: view layout must be 1, 3, 5 or 10 crops, got {head!r}")
            layouts = (int(head),)
        m = _PART.match(part)
        if not m:
            raise ValueError(f"test scale {text!r}: expected SHORT or SHORT/CROP (e.g. 256/224), got {part!r}")
        short, crop = int(m.group(1)), int(m.group(2)) if m.group(2) else None
        if short < 1 or (crop is not None and (crop < 1 or crop > short)):
            raise ValueError(f"test scale {text!r}: need 1 <= crop <= short side, got {part!r}")
        for layout in layouts:
            out[layout] = (short, crop)
    return out


def eval_scale(kind: str | None, image_size: int, spatial: int, override: str | None = None) -> tuple[int, int]:
    """``(short_side, crop)`` for ``spatial`` crops of a ``kind`` model whose input is ``image_size``.

    ``override`` (``data.test_scale``) wins; otherwise the original recipe's ratio of short
    side to crop; an unknown kind (plain CLIP) resizes the short side to the crop size.
    """
    if override:
        chosen = parse_eval_scale(override).get(spatial)
        if chosen is not None:
            short, crop = chosen
            crop = image_size if crop is None else crop
            if crop > short:
                raise ValueError(f"test scale {override!r}: short side {short} is below the crop size {crop}")
            return short, crop
    ratios = ORIGINAL_RATIO.get(kind or "", {})
    ratio = ratios.get(spatial, ratios.get(1, 1.0))  # 5 / 10 crops (Text4Vis): its single-crop scale
    return int(round(image_size * ratio)), image_size


def segment_position(kind: str | None, override: str | None = None) -> str:
    """Which frame of each segment a single test clip takes: ``override``
    (``data.test_frames``), else the original system's, else the segment middle."""
    return override or ORIGINAL_SEGMENT_POSITION.get(kind or "", "middle")


def original_eval_transform(kind: str | None, image_size: int, spatial: int, mean, std,
                            test_scale: str | None = None):
    """The evaluation transform of ``spatial`` crops as the original ``kind`` tests: its
    scale (or ``test_scale``) and its resize; plain CLIP: bicubic, short side = crop."""
    from .transforms import build_eval_transform

    short, crop = eval_scale(kind, image_size, spatial, test_scale)
    interpolation, antialias = ORIGINAL_RESIZE.get(kind or "", ("bicubic", True))
    return build_eval_transform(crop, crop=spatial, short_side=short, interpolation=interpolation,
                                antialias=antialias, mean=mean, std=std)
