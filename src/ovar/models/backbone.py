"""CLIP towers from open_clip: one loader for tags, local files and random weights."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch
from torch import nn

from ..errors import ModelError
from .content_hash import text_tower_digest
from .weights_io import infer_clip_config, is_openai_layout, load_exact, read_weights

CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)  # registers `tiny` (and any other shipped config)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_NETWORK_TIMEOUT_S = 3.0


def list_models() -> list[str]:
    """Model architecture names that :func:`load_backbone` accepts."""
    return open_clip.list_models()


def list_pretrained(name: str) -> list[str]:
    """Pretrained tags that open_clip knows for architecture ``name``."""
    return open_clip.list_pretrained_tags_by_model(name)


class ClipBackbone(nn.Module):
    """An open_clip CLIP model with the metadata ovar needs around it.

    ``fingerprint`` is a digest of the text tower's current weights (the text-embedding
    cache key), recomputed on every read so it can never describe other weights.
    """

    def __init__(self, clip: nn.Module, *, name: str, pretrained: str,
                 mean: tuple[float, ...] = OPENAI_MEAN, std: tuple[float, ...] = OPENAI_STD) -> None:
        super().__init__()
        self.clip = clip
        self.name = name
        self.pretrained = pretrained
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=clip.context_length)

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def embed_dim(self) -> int:
        return int(self.clip.text_projection.shape[1])

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp of CLIP's learned temperature (100 for OpenAI's weights)."""
        return self.clip.logit_scale.exp()

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised images -> (N, E) unnormalised embeddings."""
        return self.clip.encode_image(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, context) token ids -> (N, E) unnormalised embeddings."""
        return self.clip.encode_text(tokens)

    @property
    def fingerprint(self) -> str:
        """Digest of the text tower's weights and structure, computed now (not memoised:
        weights change in place during training, patching and loading)."""
        return f"text:{text_tower_digest(self.clip)}"


def load_backbone(name: str = "ViT-B-16", pretrained: str | os.PathLike | None = "openai", *,
                  device: str | torch.device = "cpu", quick_gelu: bool | None = None,
                  cache_dir: str | None = None) -> ClipBackbone:
    """Build a CLIP backbone.

    ``pretrained`` is an open_clip tag (``openai``, LAION tags...), a local weights file
    (OpenAI TorchScript archive or state dict, open_clip checkpoint, safetensors), or
    ``none``/``None`` for random weights (seeded, so repeated loads agree). OpenAI's
    weights need QuickGELU; it is switched on for OpenAI tags and files, and can be forced
    with ``quick_gelu``. A file with OpenAI's key layout gets its architecture from its
    tensor shapes, so the sizes need not match ``name``.
    """
    if name not in list_models():
        raise ModelError(f"unknown model '{name}' (run `ovar models` to list the available ones)")
    spec = "none" if pretrained is None else str(pretrained)
    if spec.lower() == "none":
        clip = _random_model(name, quick_gelu)
        backbone = ClipBackbone(clip, name=name, pretrained="none")
    elif Path(spec).expanduser().is_file():
        backbone = _from_file(name, Path(spec).expanduser().resolve(), quick_gelu)
    elif _looks_like_path(spec):
        raise ModelError(f"{spec}: weights file not found")
    else:
        backbone = _from_tag(name, spec, quick_gelu, cache_dir)
    return backbone.to(device).eval()


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.startswith(".") or Path(spec).suffix in {".pt", ".pth", ".bin", ".safetensors"}


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs a warning whenever it builds a model without weights; ovar loads them itself."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _create(name: str, quick_gelu: bool) -> nn.Module:
    with _quiet_open_clip():
        return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)


def _random_model(name: str, quick_gelu: bool | None) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _create(name, bool(quick_gelu))


def _from_file(name: str, path: Path, quick_gelu: bool | None) -> ClipBackbone:
    state_dict, openai_file = read_weights(path)
    cfg = open_clip.get_model_config(name) or {}
    use_quick_gelu = quick_gelu if quick_gelu is not None else (openai_file or bool(cfg.get("quick_gelu")))
    if is_openai_layout(state_dict):
        config = infer_clip_config(state_dict, use_quick_gelu)
        clip = open_clip.model.CLIP(**config)
    else:
        clip = _create(name, use_quick_gelu)
    _load_strict(clip, state_dict, path)
    return ClipBackbone(clip, name=name, pretrained=str(path))


def _load_strict(clip: nn.Module, state_dict: dict[str, torch.Tensor], path: Path) -> None:
    expected = clip.state_dict()
    if "logit_scale" in state_dict and state_dict["logit_scale"].shape != expected["logit_scale"].shape:
        state_dict["logit_scale"] = state_dict["logit_scale"].reshape(expected["logit_scale"].shape)
    # Causal masks are rebuilt from shapes; TorchScript archives may carry them as tensors.
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith("attn_mask")}
    # Released files store many weights in fp16; loading up-casts them into fp32 parameters.
    load_exact(clip, state_dict, path, "CLIP")


def _from_tag(name: str, tag: str, quick_gelu: bool | None, cache_dir: str | None) -> ClipBackbone:
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = ", ".join(list_pretrained(name)) or "none"
        raise ModelError(f"'{tag}' is neither a weights file nor a pretrained tag of {name} "
                         f"(tags: {tags})")
    path = _cached_or_download(name, tag, cfg, cache_dir)
    use_quick_gelu = quick_gelu if quick_gelu is not None else bool(cfg.get("quick_gelu"))
    state_dict, _ = read_weights(path)
    clip = _create(name, use_quick_gelu)
    _load_strict(clip, state_dict, Path(path))
    return ClipBackbone(clip, name=name, pretrained=tag,
                        mean=tuple(cfg.get("mean", OPENAI_MEAN)), std=tuple(cfg.get("std", OPENAI_STD)))


def _cached_or_download(name: str, tag: str, cfg: dict, cache_dir: str | None) -> str:
    """Local path of a tag's weights; download only when the host answers quickly."""
    hf_hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    if hf_hub:
        from huggingface_hub import constants, hf_hub_download

        repo_id, filename = os.path.split(hf_hub)
        filenames = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for candidate in filenames:
            try:
                return hf_hub_download(repo_id, candidate, cache_dir=cache_dir, local_files_only=True)
            except Exception:  # not in the local cache: fall through to the download
                continue
        host = urlparse(constants.ENDPOINT).hostname or ""
    elif url:
        cached = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        if cached.is_file():
            return str(cached)
        host = urlparse(url).hostname or ""
    else:
        raise ModelError(f"pretrained tag '{tag}' of {name} names no download location")
    if not _reachable(host):
        raise ModelError(f"cannot download the '{tag}' weights of {name}: no network connection. "
                         f"Download them elsewhere and pass the file with --pretrained PATH")
    try:
        return open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as exc:
        raise ModelError(f"downloading the '{tag}' weights of {name} failed: {exc}") from exc


def _reachable(host: str, port: int = 443) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, port), timeout=_NETWORK_TIMEOUT_S):
            return True
    except OSError:
        return False
