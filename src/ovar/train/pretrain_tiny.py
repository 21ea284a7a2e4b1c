"""Contrastive image-caption pretraining of a small CLIP on SynthActions frames.

Single frames (background, distractors, one object of some colour, shape and size at some
place and angle) are paired with captions naming what a frame shows — colour, shape,
optionally size, row and column, wrapped in one of ovar's prompt templates — and never how
the object moves: a frozen model trained this way knows objects and colours but no motion, so
the video recipes have to learn motion from the videos.

A caption may leave out the size, the row or the column, so it can be true of several images in a
batch; the loss takes every image a caption is true of as a positive (soft targets),
instead of pretending the batch diagonal is the only match.

The result is an ordinary open_clip checkpoint (``{"name", "state_dict", ...}``) that
``--pretrained FILE`` loads.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import synth_draw as D

log = logging.getLogger(__name__)


@dataclass
class PretrainOptions:
    """What the pretraining sees and how long it runs."""

    model: str = "tiny"
    colours: list[str] = field(default_factory=lambda: list(D.COLOURS))
    shapes: list[str] = field(default_factory=lambda: list(D.SHAPES))
    steps: int = 1200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 60
    size: int = 64
    seed: int = 0
    template_p: float = 0.8  # how often a caption is wrapped in a prompt template
    position_init_scale: float = 10.0  # the image tower's initial position embeddings x this
    place_p: float = 0.8  # how often a caption names each of the object's row and column
    threads: int | None = None  # torch threads; None leaves torch's default


# Where the object is, in four bands along each axis. Bands this fine make a frame's
# embedding keep where the object is, so that its change over a clip can show the direction
# of motion; the words include "left", "right", "up" and "down", so a class name such as
# "moving up" is not an unknown word to the text tower (they name places, never motion).
ROWS = ("up at the top", "up high", "down low", "down at the bottom")
COLUMNS = ("far to the left", "to the left", "to the right", "far to the right")


@dataclass(frozen=True)
class Caption:
    """What a caption says; ``None`` parts are left unsaid."""

    colour: str
    shape: str
    size: str | None
    row: int | None
    column: int | None

    def text(self) -> str:
        words = [w for w in (self.size, self.colour, self.shape) if w]
        if self.row is not None:
            words.append(ROWS[self.row])
        if self.column is not None:
            words.append(COLUMNS[self.column])
        return "a " + " ".join(words)


def band(value: float, size: int, bands: int = 4) -> int:
    """Which of ``bands`` equal bands of the frame side ``value`` (pixels) is in."""
    return min(max(int(bands * value / size), 0), bands - 1)


def _size_word(radius: float, size: int) -> str:
    rel = radius / size
    return min(D.SIZES, key=lambda k: abs(D.SIZES[k] - rel))


def _templates() -> list[str]:
    from ..text.templates import TEMPLATE_SETS

    return sorted({t for ts in TEMPLATE_SETS.values() for t in ts})


def sample_batch(rng: np.random.Generator, opts: PretrainOptions, templates: list[str]
                 ) -> tuple[np.ndarray, list[str], list[tuple[str, str, str, int, int]], list[Caption]]:
    """Frames ``(B, S, S, 3)`` uint8, their caption texts, their true attributes
    (colour, shape, size, row band, column band) and what each caption says."""
    n, size = opts.batch_size, opts.size
    frames = np.empty((n, size, size, 3), np.uint8)
    texts, truths, captions = [], [], []
    grow = 1.8 ** 0.5  # radii met while growing / shrinking
    for i in range(n):
        colour, shape = str(rng.choice(opts.colours)), str(rng.choice(opts.shapes))
        base = float(rng.choice(list(D.SIZES.values()))) * size
        radius = base * float(np.exp(rng.uniform(-np.log(grow), np.log(grow)))) if rng.random() < 0.3 else base
        margin = radius + 1
        x, y = rng.uniform(margin, size - margin), rng.uniform(margin, size - margin)
        state = D.ObjectState(x, y, radius, rng.uniform(0, 360))
        bg = D.background(rng, size)
        clutter = D.distractors(rng, size, int(rng.integers(0, 4)))
        frames[i] = D.render(size, bg, clutter, shape, D.object_colour(rng, colour), [state], np.zeros(1))[0]
        truth = (colour, shape, _size_word(radius, size), band(y, size), band(x, size))
        cap = Caption(colour, shape, truth[2] if rng.random() < 0.4 else None,
                      truth[3] if rng.random() < opts.place_p else None,
                      truth[4] if rng.random() < opts.place_p else None)
        template = templates[int(rng.integers(len(templates)))] if rng.random() < opts.template_p else "{}"
        texts.append(template.format(cap.text()))
        truths.append(truth)
        captions.append(cap)
    return frames, texts, truths, captions


def match_matrix(truths: list[tuple[str, str, str, int, int]], captions: list[Caption]) -> torch.Tensor:
    """``M[i, j] = 1`` when caption j is true of image i."""
    m = torch.zeros(len(truths), len(captions))
    for j, c in enumerate(captions):
        for i, (colour, shape, size, row, column) in enumerate(truths):
            if (c.colour == colour and c.shape == shape and (c.size is None or c.size == size)
                    and (c.row is None or c.row == row) and (c.column is None or c.column == column)):
                m[i, j] = 1.0
    return m


def soft_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy against targets spread evenly over every true pair."""
    logits = scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
    to_text = match / match.sum(1, keepdim=True)
    to_image = match.t() / match.t().sum(1, keepdim=True)
    return 0.5 * (torch.sum(-to_text * F.log_softmax(logits, 1), 1).mean()
                  + torch.sum(-to_image * F.log_softmax(logits.t(), 1), 1).mean())


def encode_text_short(clip: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` on the tokens up to the longest caption's end token.

    Exact, not an approximation: the text tower's attention is causal, so the end token's
    output (the caption's embedding) does not depend on the padding after it, and short
    captions need a fraction of the 77-token context's compute.
    """
    from open_clip.transformer import text_global_pool

    length = int((tokens != 0).sum(1).max())
    tokens = tokens[:, :length]
    x = clip.token_embedding(tokens) + clip.positional_embedding[:length]
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = text_global_pool(clip.ln_final(x), tokens, clip.text_pool_type)
    return x @ clip.text_projection


def pretrain(opts: PretrainOptions, out: str | Path,
             progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Train ``opts.model`` from random weights and save it to ``out``; returns the path."""
    from ..models.backbone import OPENAI_MEAN, OPENAI_STD, load_backbone
    from ..train.checkpoint import save_atomic

    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(np.random.SeedSequence([opts.seed, 7]))
    backbone = load_backbone(opts.model, "none")
    if backbone.image_size != opts.size:
        raise ValueError(f"{opts.model} takes {backbone.image_size}-pixel images, frames are {opts.size}")
    clip = backbone.clip.train()
    with torch.no_grad():
        # open_clip's initial position embeddings are small next to a 16-pixel patch's
        # embedding; a ViT this small then learns where things are very slowly.
        clip.visual.positional_embedding.mul_(opts.position_init_scale)
    decay = [p for n, p in clip.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in clip.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    try:  # the fused CPU kernel (torch >= 2.4) is several times faster than the loop over tensors
        optim = torch.optim.AdamW(groups, lr=opts.lr, fused=True)
    except (RuntimeError, TypeError):
        optim = torch.optim.AdamW(groups, lr=opts.lr)
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    templates = _templates()
    start = time.monotonic()
    for step in range(opts.steps):
        lr = opts.lr * min(1.0, (step + 1) / opts.warmup) * 0.5 * (1 + math.cos(math.pi * step / opts.steps))
        for group in optim.param_groups:
            group["lr"] = lr
        frames, texts, truths, captions = sample_batch(rng, opts, templates)
        images = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        loss = soft_clip_loss(clip.encode_image(images), encode_text_short(clip, backbone.tokenize(texts)),
                              clip.logit_scale.exp(), match_matrix(truths, captions))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))
        if progress is not None:
            progress(step + 1, opts.steps, loss.item())
    log.info("pretrained %s for %d steps in %.0f s", opts.model, opts.steps, time.monotonic() - start)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in clip.state_dict().items()}
    save_atomic({"name": opts.model, "epoch": opts.steps, "state_dict": state}, path)
    return path
