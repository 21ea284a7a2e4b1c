"""Scores of each reference set's converted model in fp32 and in reduced precision (bf16/fp16)."""

from __future__ import annotations

import torch

from reference_set import ReferenceSet

SYSTEMS = ("actionclip", "text4vis", "evl", "open_vclip", "froster")


def _descriptions(meta: dict) -> list[str]:
    texts = meta["rephrased_texts"]
    return [texts[str(i)] for i in range(len(texts))] if isinstance(texts, dict) else list(texts)


def reference_case(system: str):
    """(model, clips (B, T, 3, H, W), classifier) of ``system``'s reference set, as its parity test builds them."""
    from ovar.models.convert import convert_checkpoint

    ref = ReferenceSet(system)
    meta, video = ref.meta, ref.load("inputs.pt")["video"]
    root = ref.root
    if system in ("actionclip", "text4vis"):
        extra = {"clip": root / "clip.pt"} if system == "text4vis" else {}
        model = convert_checkpoint(system, root / "checkpoint.pth", **extra)
        names, templates, descriptions = meta["inputs"]["class_names"], meta["inputs"]["templates"], None
    elif system == "evl":
        model = convert_checkpoint("evl", root / "checkpoint.pth", clip=root / "clip.pt",
                                   num_heads=meta["decoder"]["num_heads"], class_names=meta["inputs"]["class_names"])
        video = video.transpose(1, 2)
        names, templates, descriptions = meta["inputs"]["class_names"], None, None
    else:
        extra = {"clip": root / "clip.pt"} if system == "open_vclip" else {}
        model = convert_checkpoint(system, root / "checkpoint.pth", frames=meta["sizes"]["frames_T"], **extra)
        video = video.permute(0, 2, 1, 3, 4)
        names, templates = meta["classes"], meta["templates"]
        descriptions = _descriptions(meta) if system == "froster" else None
    model.eval()
    with torch.no_grad():
        classifier = model.classifier(names, templates, descriptions=descriptions, cache=False)
    return model, video, classifier


@torch.no_grad()
def probabilities(model, video: torch.Tensor, classifier: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """(B, C) class probabilities, the video encoder run under autocast to ``dtype`` (None: fp32), as predict does."""
    if dtype is None:
        embeddings = model.encode_video(video)
    else:
        with torch.autocast(video.device.type, dtype=dtype):
            embeddings = model.encode_video(video)
    return model.probabilities(embeddings.float(), classifier)


def compare(system: str, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Max abs probability difference and top-1 agreement of ``dtype`` against fp32 on ``system``'s set."""
    model, video, classifier = reference_case(system)
    full = probabilities(model, video, classifier, None)
    reduced = probabilities(model, video, classifier, dtype)
    return {"system": system, "videos": full.shape[0], "classes": full.shape[1],
            "max_abs_prob_diff": (full - reduced).abs().max().item(),
            "top1_agreement": (full.argmax(-1) == reduced.argmax(-1)).float().mean().item()}
