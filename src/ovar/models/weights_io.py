"""Reading CLIP weight files safely, and inferring a CLIP architecture from its tensors.

Supported files: OpenAI's TorchScript archives (read as data for their tensors only, never
loaded as a program: :mod:`ovar.models.torchscript_reader`), plain or wrapped state dicts
saved with ``torch.save`` (read with ``weights_only=True``) and safetensors files.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .torchscript_reader import read_torchscript

# Integer scalars that OpenAI's files carry next to the weights.
OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Keys every OpenAI-layout CLIP state dict holds (ViT image tower).
_OPENAI_VIT_KEYS = (
    "visual.conv1.weight",
    "visual.class_embedding",
    "visual.positional_embedding",
    "visual.proj",
    "token_embedding.weight",
    "positional_embedding",
    "text_projection",
    "ln_final.weight",
)


def is_torchscript_archive(path: Path) -> bool:
    """True for a TorchScript zip archive (it holds a ``code/`` folder next to its data)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def is_safetensors(path: Path) -> bool:
    """True for a ``.safetensors`` file (by name; such files hold tensors and strings only)."""
    return path.suffix == ".safetensors"


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    from safetensors.torch import load_file as load_safetensors

    return load_safetensors(str(path), device="cpu")


def read_saved(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """What ovar saved with ``torch.save`` (a model file, a training checkpoint, averaged
    weights): the one reader of such files, ``torch.load(weights_only=True)``, so nothing
    but tensors and plain data is ever unpickled.  Errors are torch's own; see
    :func:`load_file` for the one-line user error."""
    return torch.load(path, map_location=map_location, weights_only=True)


def load_file(path: str | Path, what: str) -> Any:
    """:func:`read_saved` of ``path``; a missing or unreadable file is a one-line
    :class:`ModelError` naming the file (``what`` says what it should be)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: {what} not found")
    if is_safetensors(path):  # bare tensors: no layout, format or settings a checkpoint carries
        raise ModelError(f"{path}: a safetensors file holds bare weights, not a {what}; it is taken "
                         f"where CLIP weights are (--pretrained, --clip, `ovar weights interpolate`)")
    try:
        return read_saved(path)
    except Exception as exc:  # torch raises many types for a damaged or unsafe file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot read {what} ({first})") from exc


def load_exact(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, what: str) -> None:
    """Strict ``load_state_dict`` whose error is one line naming the file and the first
    missing, unknown or mis-shaped key. fp16 tensors are up-cast into the module's dtype."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise ModelError(f"{path}: weights do not match the model: {what} weights lack key '{missing[0]}'")
    if unexpected:
        raise ModelError(f"{path}: weights do not match the model: unknown {what} key '{unexpected[0]}'")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelError(f"{path}: weights do not match the model: {what} key '{key}' has shape "
                             f"{tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
    module.load_state_dict(state, strict=True)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], bool]:
    """Read a weights file into a flat ``{name: tensor}`` dict.

    Returns the state dict and whether the file is known to come from OpenAI's release
    (a TorchScript archive, or a dict carrying OpenAI's metadata scalars), which tells the
    caller that the model uses QuickGELU.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: weights file is empty (0 bytes)")
    openai_file = False
    try:
        if is_safetensors(path):
            obj: Any = read_safetensors(path)
        elif is_torchscript_archive(path):
            # The TorchScript program is never run: its parameters and buffers are read as data.
            obj = read_torchscript(path)
            openai_file = True
        else:
            obj = read_saved(path)
    except ModelError:
        raise
    except Exception as exc:  # torch/safetensors raise many types for a bad file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot read weights ({first_line})") from exc
    state_dict = unwrap_state_dict(obj, path)
    if any(key in state_dict for key in OPENAI_METADATA_KEYS):
        openai_file = True
    for key in OPENAI_METADATA_KEYS:
        state_dict.pop(key, None)
    return state_dict, openai_file


def unwrap_state_dict(obj: Any, path: str | Path = "<weights>") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common checkpoint wrappers and strip a ``module.`` prefix."""
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{path}: no weights found in the file")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{path}: no tensors found in the file")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def is_openai_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """True if the dict uses OpenAI CLIP's key names with a ViT image tower."""
    return all(key in state_dict for key in _OPENAI_VIT_KEYS)


def infer_clip_config(state_dict: dict[str, torch.Tensor], quick_gelu: bool) -> dict[str, Any]:
    """Derive an open_clip model config from the shapes of an OpenAI-layout state dict."""
    if not is_openai_layout(state_dict):
        raise ModelError("weights do not have the OpenAI CLIP (ViT) layout")

    vision_width, _, patch, _ = state_dict["visual.conv1.weight"].shape
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = state_dict["ln_final.weight"].shape[0]
    vision_layers = len({k.split(".")[3] for k in state_dict if k.startswith("visual.transformer.resblocks.")})
    text_layers = len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")})
    return {
        "embed_dim": int(state_dict["text_projection"].shape[1]),
        "quick_gelu": quick_gelu,
        "vision_cfg": {
            "image_size": int(patch * grid),
            "layers": vision_layers,
            "width": int(vision_width),
            # OpenAI's ViTs use 64-wide heads; tiny widths still get one head.
            "head_width": min(64, int(vision_width)),
            "patch_size": int(patch),
        },
        "text_cfg": {
            "context_length": int(state_dict["positional_embedding"].shape[0]),
            "vocab_size": int(state_dict["token_embedding.weight"].shape[0]),
            "width": int(text_width),
            "heads": max(1, int(text_width) // 64),
            "layers": text_layers,
        },
    }
