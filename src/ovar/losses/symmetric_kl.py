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


def symmetric_kl_loss(video: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                      logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the video->text and text->video KL(target || prediction).

    ``video`` and ``text`` are (B, E) embeddings of the batch's videos and of one prompt of
    each video's class; two videos of the same class are both positives. Each direction is
    the KL summed over the batch matrix and divided by B, as the original reduces it.
    """
    video = F.normalize(video, dim=-1)
    text = F.normalize(text, dim=-1)
    logits = logit_scale * video @ text.t()
    targets = same_label_targets(labels)
    batch = labels.shape[0]
    v2t = F.kl_div(logits.log_softmax(dim=-1), targets, reduction="sum") / batch
    t2v = F.kl_div(logits.t().log_softmax(dim=-1), targets, reduction="sum") / batch
    return (v2t + t2v) / 2


def global_symmetric_kl_loss(video: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                             logit_scale: torch.Tensor) -> torch.Tensor:
    """:func:`symmetric_kl_loss` over the batch of every process (torchrun), as ActionCLIP's
    single-process DataParallel computes it over its whole batch.

    Embeddings are gathered with gradients and labels without, so the same-class targets
    span the gathered batch; under DDP the result (loss and parameter gradients) equals
    one process on the concatenated batch.  Without a process group it is the plain loss.
    """
    from ..train.distributed import gather_no_grad, gather_with_grad

    return symmetric_kl_loss(gather_with_grad(video), gather_with_grad(text), gather_no_grad(labels), logit_scale)
