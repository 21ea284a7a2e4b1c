"""ActionCLIP's video-text loss: symmetric KL with several positives per row."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Sharpness of the target distribution: softmax(10 * G) puts ~all mass on same-label items.
_TARGET_TEMPERATURE = 10.0


def same_label_targets(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) row distributions over the batch that spread evenly over same-label items."""
    same = (labels[:, None] == labels[None, :]).float()
    return (_TARGET_TEMPERATURE * same).softmax(dim=-1)


def dual_softmax(logits: torch.Tensor, temperature: float = 1000.0) -> torch.Tensor:
    """Text4Vis's ``DS`` re-weighting: ``logits * softmax(logits / 1000, dim=0) * B``."""
    return logits * (logits / temperature).softmax(dim=0) * logits.shape[0]


def symmetric_kl_loss(video: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                      logit_scale: torch.Tensor, *, mode: str = "nce") -> torch.Tensor:
    """Mean of the video->text and text->video KL(target || prediction).

    ``video`` and ``text`` are (B, E) embeddings of the batch's videos and of one prompt of
    each video's class; two videos of the same class are both positives. Each direction is
    the KL summed over the batch matrix and divided by B, as the original reduces it.
    ``mode`` selects Text4Vis's ``train_nce.py`` variants: ``"nce"`` (this KL), ``"ds"``
    (the KL of :func:`dual_softmax` re-weighted logits) or ``"ce"`` (cross-entropy with
    the diagonal as the only positive).
    """
    video = F.normalize(video, dim=-1)
    text = F.normalize(text, dim=-1)
    logits = logit_scale * video @ text.t()
    per_video, per_text = logits, logits.t()
    batch = labels.shape[0]
    if mode == "ce":
        target = torch.arange(batch, device=logits.device)
        return (F.cross_entropy(per_video, target) + F.cross_entropy(per_text, target)) / 2
    if mode == "ds":
        per_video, per_text = dual_softmax(per_video), dual_softmax(per_text)
    elif mode != "nce":
        raise ValueError(f"loss mode must be 'nce', 'ds' or 'ce', got {mode!r}")
    targets = same_label_targets(labels)
    v2t = F.kl_div(per_video.log_softmax(dim=-1), targets, reduction="sum") / batch
    t2v = F.kl_div(per_text.log_softmax(dim=-1), targets, reduction="sum") / batch
    return (v2t + t2v) / 2


def global_symmetric_kl_loss(video: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                             logit_scale: torch.Tensor, *, mode: str = "nce") -> torch.Tensor:
    """:func:`symmetric_kl_loss` over the batch of every process (torchrun), as ActionCLIP's
    single-process DataParallel computes it over its whole batch.

    Embeddings are gathered with gradients and labels without, so the same-class targets
    span the gathered batch; under DDP the result (loss and parameter gradients) equals
    one process on the concatenated batch.  Without a process group it is the plain loss.
    """
    from .gather import gather_no_grad, gather_with_grad

    return symmetric_kl_loss(gather_with_grad(video), gather_with_grad(text), gather_no_grad(labels), logit_scale,
                             mode=mode)
