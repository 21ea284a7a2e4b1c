"""Clip-level training augmentations of the originals, one random draw per clip.

* :class:`MultiScaleCrop` -- TSN's multi-scale crop (ActionCLIP): a crop whose sides are
  picked among ``scales`` x the short side (aspect distortion at most one step), placed at
  one of 13 fixed positions, resized to the input size.  torchvision's ``resized_crop``
  does the cropping; only the choice of the box is specific to TSN.
* :func:`make_color_jitter` -- torchvision ``ColorJitter`` applied with probability ``p``.
* :class:`TimmRandAugment` -- timm's RandAugment (e.g. EVL's ``rand-m7-n4-mstd0.5-inc1``)
  on the PIL frames, with every frame given the same random ops and magnitudes.

Each op is called on a whole clip (a ``tv_tensors.Video`` shaped (T, C, H, W)) and draws
its random parameters from torch's global RNG, so :class:`~ovar.video.transforms.TrainTransform`
seeds them like every other op.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

TSN_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)


def _pick(options: Sequence[Any]) -> Any:
    return options[int(torch.randint(len(options), ()))]


class MultiScaleCrop(v2.Transform):
    """TSN ``GroupMultiScaleCrop(size, scales, max_distort=1, fix_crop=True, more_fix_crop=True)``."""

    def __init__(self, size: int, scales: Sequence[float] = TSN_SCALES, max_distort: int = 1,
                 interpolation: v2.InterpolationMode = v2.InterpolationMode.BILINEAR) -> None:
        super().__init__()
        self.size, self.scales, self.max_distort = int(size), tuple(scales), int(max_distort)
        self.interpolation = interpolation

    def candidates(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (crop_w, crop_h) pairs a crop is drawn from."""
        base = min(height, width)
        sides = [int(base * s) for s in self.scales]
        # A side within 3 px of the input size snaps to it (no resize for that axis).
        hs = [self.size if abs(s - self.size) < 3 else s for s in sides]
        ws = [self.size if abs(s - self.size) < 3 else s for s in sides]
        pairs = [(w, h) for i, h in enumerate(hs) for j, w in enumerate(ws) if abs(i - j) <= self.max_distort]
        return pairs

    @staticmethod
    def offsets(height: int, width: int, crop_w: int, crop_h: int) -> list[tuple[int, int]]:
        """The 13 fixed (left, top) positions: corners, centre, edge middles, quarter points."""
        ws, hs = (width - crop_w) // 4, (height - crop_h) // 4
        grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
                (1, 1), (3, 1), (1, 3), (3, 3)]
        return [(i * ws, j * hs) for i, j in grid]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        crop_w, crop_h = _pick(self.candidates(height, width))
        left, top = _pick(self.offsets(height, width, crop_w, crop_h))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resized_crop(inpt, params["top"], params["left"], params["height"], params["width"],
                              [self.size, self.size], interpolation=self.interpolation, antialias=True)


def make_color_jitter(p: float, brightness: float, contrast: float, saturation: float, hue: float) -> v2.RandomApply:
    """torchvision ColorJitter applied with probability ``p`` (one draw for the whole clip)."""
    return v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)], p=p)


def check_rand_augment_spec(spec: str) -> None:
    """ValueError unless timm can build RandAugment from ``spec`` (``rand-m7-n4-mstd0.5-inc1``);
    called when a run is configured, so a typo does not stop the first training step."""
    from timm.data.auto_augment import rand_augment_transform

    try:
        rand_augment_transform(spec, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except (AssertionError, KeyError, ValueError, IndexError, TypeError):
        raise ValueError(f"not a timm RandAugment spec: {spec!r} (e.g. 'rand-m7-n4-mstd0.5-inc1')") from None


class TimmRandAugment(torch.nn.Module):
    """timm ``rand_augment_transform(spec)`` applied to every frame with the same random draw.

    timm draws from Python's ``random`` and numpy's global RNG; both are seeded from one
    torch draw before each frame (so all frames get the same ops and magnitudes) and
    restored afterwards.  Hyper-parameters follow timm's own factory: translate constant
    ``0.45 x`` the short side, fill with the mean pixel, bicubic resampling.
    """

    def __init__(self, spec: str, mean: Sequence[float] = (0.48145466, 0.4578275, 0.40821073)) -> None:
        super().__init__()
        from timm.data.auto_augment import rand_augment_transform  # noqa: F401  (fail early if absent)

        self.spec = spec
        self.fill = tuple(int(round(255 * m)) for m in mean)

    def _op(self, height: int, width: int):
        from PIL import Image
        from timm.data.auto_augment import rand_augment_transform

        hparams = {"translate_const": int(0.45 * min(height, width)), "img_mean": self.fill,
                   "interpolation": Image.BICUBIC}
        return rand_augment_transform(self.spec, hparams)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.dtype != torch.uint8:
            raise ValueError("TimmRandAugment needs uint8 frames")
        op = self._op(*video.shape[-2:])
        seed = int(torch.randint(2**31 - 1, ()))
        py_state, np_state = random.getstate(), np.random.get_state()
        frames = []
        try:
            for frame in video.as_subclass(torch.Tensor):
                random.seed(seed)
                np.random.seed(seed)
                frames.append(F.pil_to_tensor(op(F.to_pil_image(frame))))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        return tv_tensors.Video(torch.stack(frames))

    def extra_repr(self) -> str:
        return repr(self.spec)
