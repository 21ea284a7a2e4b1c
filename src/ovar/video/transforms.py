"""Spatial transforms on video clips shaped ``(T, C, H, W)``.

Clips are uint8 tensors (``float`` in ``[0, 1]`` also works for the deterministic
ops). Random train-time ops are ``torchvision.transforms.v2`` transforms applied to
a whole clip wrapped as :class:`torchvision.tv_tensors.Video`, so each call draws
**one** set of random parameters (crop box, flip, RandAugment ops) shared by every
frame: the frames of a clip stay spatially aligned.

Randomness: v2 transforms draw from torch's global RNG. :class:`TrainTransform`
accepts an optional :class:`torch.Generator`; when given, a seed is drawn from it
and the ops run inside :func:`fork_rng`, so results depend only on the generator
and the global RNG is left untouched. Without one, seed globally
(``torch.manual_seed``) or wrap calls in ``with fork_rng(seed):``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .clip_augment import MultiScaleCrop, TimmRandAugment, make_color_jitter

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "EvalTransform",
    "ShortSideJitter",
    "TrainTransform",
    "build_eval_transform",
    "build_train_transform",
    "center_crop",
    "fork_rng",
    "make_flip",
    "make_rand_augment",
    "make_random_resized_crop",
    "make_short_side_jitter_crop",
    "normalize",
    "resize_short",
    "spatial_crop",
    "three_crops",
]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

Interpolation = Literal["nearest", "bilinear", "bicubic"]
_MODES = {
    "nearest": v2.InterpolationMode.NEAREST,
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
}


def _mode(name: str) -> v2.InterpolationMode:
    try:
        return _MODES[name]
    except KeyError:
        raise ValueError(f"interpolation must be one of {sorted(_MODES)}, got {name!r}") from None


def _check_clip(clip: torch.Tensor) -> None:
    if not isinstance(clip, torch.Tensor) or clip.ndim != 4:
        shape = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
        raise ValueError(f"expected a clip tensor shaped (T, C, H, W), got {shape}")
    if min(clip.shape) < 1:
        raise ValueError(f"clip has an empty dimension: {tuple(clip.shape)}")


def _check_size(size: int, name: str = "size") -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {size!r}")


def _video(clip: torch.Tensor) -> tv_tensors.Video:
    _check_clip(clip)
    return clip if isinstance(clip, tv_tensors.Video) else tv_tensors.Video(clip)


def _plain(clip: torch.Tensor) -> torch.Tensor:
    """Drop the tv_tensor subclass so callers get an ordinary Tensor back."""
    return clip.as_subclass(torch.Tensor)


@contextmanager
def fork_rng(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded to ``seed``, then restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------- deterministic ops


def resize_short(
    clip: torch.Tensor,
    size: int,
    interpolation: Interpolation = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize so the short side is ``size``, keeping the aspect ratio.

    The long side becomes ``int(size * long / short)`` (torchvision's rule).
    """
    _check_size(size)
    out = F.resize(_video(clip), [size], interpolation=_mode(interpolation), antialias=antialias)
    return _plain(out)


def _crop_at(clip: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return _plain(F.crop(_video(clip), top, left, size, size))


def _check_fits(clip: torch.Tensor, size: int) -> tuple[int, int]:
    _check_clip(clip)
    _check_size(size)
    h, w = clip.shape[-2:]
    if h < size or w < size:
        # torchvision would zero-pad silently; a padded border is never what we want.
        raise ValueError(f"cannot take a {size}x{size} crop of a {h}x{w} clip; resize it first")
    return h, w


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The centred ``size x size`` crop (offsets ``(H - size) // 2``, ``(W - size) // 2``)."""
    h, w = _check_fits(clip, size)
    return _crop_at(clip, (h - size) // 2, (w - size) // 2, size)


def _three_crop_box(h: int, w: int, size: int, index: int) -> tuple[int, int]:
    """(top, left) of crop ``index`` (0 start, 1 middle, 2 end) along the long side."""
    # Square clips crop along the width, like landscape ones.
    if w >= h:
        return (h - size) // 2, [0, (w - size) // 2, w - size][index]
    return [0, (h - size) // 2, h - size][index], (w - size) // 2


def three_crops(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three ``size x size`` crops at the start, middle and end of the long side.

    The other axis is centred (it is fully covered when the short side equals
    ``size``, as in EVL). The middle crop equals :func:`center_crop`. Text4Vis
    orders its crops left/right/centre with the right one up to 3 px short of the
    edge; order does not matter for view averaging, so the exact edge is used here.
    """
    h, w = _check_fits(clip, size)
    return [_crop_at(clip, *_three_crop_box(h, w, size, i), size) for i in range(3)]


def spatial_crop(clip: torch.Tensor, size: int, index: int, num_crops: int) -> torch.Tensor:
    """Crop ``index`` of ``num_crops`` spatial views: 1 = centre, 3 = start/middle/end."""
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_crops:
        raise ValueError(f"crop index must be in [0, {num_crops - 1}], got {index!r}")
    if num_crops == 1:
        return center_crop(clip, size)
    h, w = _check_fits(clip, size)
    return _crop_at(clip, *_three_crop_box(h, w, size, index), size)


def normalize(
    clip: torch.Tensor,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """``(clip / 255 - mean) / std`` per channel, as float32 ``(T, C, H, W)``.

    uint8 input is scaled to ``[0, 1]`` first; floating input is taken to be in
    ``[0, 1]`` already.
    """
    _check_clip(clip)
    x = _plain(clip)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean/std need {x.shape[1]} values, got {len(mean)} and {len(std)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------- random ops (v2)


def make_random_resized_crop(
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: Interpolation = "bilinear",
) -> v2.RandomResizedCrop:
    """Inception-style crop (area fraction ``scale``, log-uniform aspect ``ratio``)."""
    _check_size(size)
    return v2.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=_mode(interpolation))


def make_flip(p: float = 0.5) -> v2.RandomHorizontalFlip:
    """Mirror the whole clip with probability ``p``."""
    return v2.RandomHorizontalFlip(p)


def make_rand_augment(
    num_ops: int = 2, magnitude: int = 9, interpolation: Interpolation = "bilinear"
) -> v2.RandAugment:
    """RandAugment with ``num_ops`` ops at ``magnitude`` (0-30), same ops for all frames."""
    # Tensor affine kernels support only nearest/bilinear, so bicubic is not offered.
    if interpolation == "bicubic":
        raise ValueError("RandAugment on tensors supports 'nearest' or 'bilinear' only")
    return v2.RandAugment(num_ops=num_ops, magnitude=magnitude, interpolation=_mode(interpolation))


class ShortSideJitter(v2.Transform):
    """Resize the short side to ``round(U(low, high))`` (PySlowFast train scale jitter)."""

    def __init__(self, low: int, high: int, interpolation: Interpolation = "bilinear") -> None:
        super().__init__()
        _check_size(low, "jitter low")
        _check_size(high, "jitter high")
        if low > high:
            raise ValueError(f"jitter range must have low <= high, got ({low}, {high})")
        self.low, self.high = low, high
        self.interpolation = _mode(interpolation)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        u = float(torch.empty((), dtype=torch.float64).uniform_(self.low, self.high))
        return {"size": int(round(u))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resize(inpt, [params["size"]], interpolation=self.interpolation, antialias=True)


def make_short_side_jitter_crop(
    size: int, jitter: tuple[int, int], interpolation: Interpolation = "bilinear"
) -> v2.Compose:
    """Open-VCLIP train rule: short side to ``U(jitter)``, then a random ``size`` crop."""
    _check_size(size)
    if jitter[0] < size:
        raise ValueError(f"jitter low end {jitter[0]} must be >= crop size {size}")
    return v2.Compose([ShortSideJitter(*jitter, interpolation=interpolation), v2.RandomCrop(size)])


# ------------------------------------------------------------------------------ pipelines


_CROPS: dict[str | int, int] = {"center": 1, "centre": 1, "three": 3, "five": 5, "ten": 10, 1: 1, 3: 3, 5: 5, 10: 10}


class EvalTransform:
    """uint8 clip ``(T, C, H, W)`` -> float32 ``(num_crops, T, C, size, size)``.

    Resize the short side to ``short_side`` (default ``size``), take the centre crop,
    the three long-side crops, or Text4Vis's 5 (corners + centre) / 10 (those and their
    mirror images) crops (torchvision ``five_crop`` / ``ten_crop``), and normalise.
    """

    def __init__(
        self,
        size: int = 224,
        crop: Literal["center", "three"] | int = "center",
        short_side: int | None = None,
        interpolation: Interpolation = "bicubic",
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        antialias: bool = True,
    ) -> None:
        _check_size(size)
        short_side = size if short_side is None else short_side
        _check_size(short_side, "short_side")
        if short_side < size:
            raise ValueError(f"short_side {short_side} must be >= crop size {size}")
        crops = None if isinstance(crop, bool) else _CROPS.get(crop)
        if crops is None:
            raise ValueError(f"crop must be 'center', 'three', 'five' or 'ten' (or 1 / 3 / 5 / 10), got {crop!r}")
        _mode(interpolation)
        self.size, self.short_side, self.num_crops = size, short_side, crops
        self.interpolation, self.antialias = interpolation, antialias
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        resized = resize_short(clip, self.short_side, self.interpolation, self.antialias)
        if self.num_crops in (5, 10):
            _check_fits(resized, self.size)
            video = _video(resized)
            crops = F.five_crop(video, self.size) if self.num_crops == 5 else F.ten_crop(video, self.size)
            views = [_plain(c) for c in crops]
        elif self.num_crops == 1:
            views = [center_crop(resized, self.size)]
        else:
            views = three_crops(resized, self.size)
        return torch.stack([normalize(v, self.mean, self.std) for v in views])

    def __repr__(self) -> str:
        return (
            f"EvalTransform(size={self.size}, num_crops={self.num_crops}, "
            f"short_side={self.short_side}, interpolation={self.interpolation!r})"
        )


# Built by its constructor; the function-style name pairs with build_train_transform.
build_eval_transform = EvalTransform


class TrainTransform:
    """uint8 clip ``(T, C, H, W)`` -> float32 ``(T, C, size, size)``, random per call.

    Order: optional short-side resize -> timm RandAugment / torchvision RandAugment
    (at input resolution, as in EVL) -> spatial crop -> flip -> colour jitter ->
    grayscale -> normalise. The spatial crop is TSN's multi-scale crop when
    ``multi_scale_crop`` gives its scales, else the short-side jitter + random crop
    when ``jitter`` is given, else a random resized crop when ``random_resized_crop``,
    else resize + centre crop (see :mod:`ovar.video.clip_augment`).
    """

    def __init__(
        self,
        size: int = 224,
        *,
        random_resized_crop: bool = True,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        rand_augment: tuple[int, int] | None = None,
        jitter: tuple[int, int] | None = None,
        short_side: int | None = None,
        grayscale: float = 0.0,
        interpolation: Interpolation = "bilinear",
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        multi_scale_crop: Sequence[float] | None = None,
        color_jitter: tuple[float, float, float, float, float] | None = None,
        timm_rand_augment: str | None = None,
    ) -> None:
        _check_size(size)
        for name, p in (("flip", flip), ("grayscale", grayscale)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability must be in [0, 1], got {p!r}")
        ops: list[Any] = []
        if short_side is not None:
            _check_size(short_side, "short_side")
            ops.append(v2.Resize(short_side, interpolation=_mode(interpolation), antialias=True))
        if timm_rand_augment is not None:
            ops.append(TimmRandAugment(timm_rand_augment, mean))
        if rand_augment is not None:
            ops.append(make_rand_augment(*rand_augment))
        if multi_scale_crop is not None:
            ops.append(MultiScaleCrop(size, multi_scale_crop, interpolation=_mode(interpolation)))
        elif jitter is not None:
            ops.append(make_short_side_jitter_crop(size, jitter, interpolation))
        elif random_resized_crop:
            ops.append(make_random_resized_crop(size, scale, ratio, interpolation))
        else:
            ops += [v2.Resize(size, interpolation=_mode(interpolation), antialias=True),
                    v2.CenterCrop(size)]
        if flip > 0:
            ops.append(make_flip(flip))
        if color_jitter is not None:
            ops.append(make_color_jitter(*color_jitter))
        if grayscale > 0:
            ops.append(v2.RandomGrayscale(grayscale))
        self.size = size
        self.ops = v2.Compose(ops)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(
        self, clip: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        video = _video(clip)
        if generator is None:
            out = self.ops(video)
        else:
            seed = int(torch.randint(2**62, (), generator=generator))
            with fork_rng(seed):
                out = self.ops(video)
        return normalize(out, self.mean, self.std)

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, ops={self.ops!r})"


# The training pipeline is built by its constructor; this name mirrors build_eval_transform.
build_train_transform = TrainTransform
