"""Models that travel: an ovar model as a folder of ``model.safetensors`` + ``config.json``
+ a model card (``README.md``), loadable from disk or from the Hugging Face Hub.

``config.json`` holds everything but the tensors of an ovar model file (format, version,
kind, backbone spec, constructor args) plus what a user of the model needs to know: the
frames and prompt templates it was trained with, its class names and its training recipe
when the run recorded them.  The tensors are read with safetensors, never unpickled.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
HUB_PREFIX = "hf-hub:"


def is_exported_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding an exported ovar model."""
    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        return False
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == "ovar-model"


def is_model_reference(spec: object) -> bool:
    """True when ``spec`` (a ``--pretrained`` value) names a whole exported model."""
    if spec is None:
        return False
    text = str(spec)
    return text.startswith(HUB_PREFIX) or (Path(text).expanduser().is_dir() and is_exported_folder(Path(text).expanduser()))


def export_model(source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the trained model at ``source`` (an ``ovar train`` run folder, an ovar model
    file, or any checkpoint a run writes) to the folder ``out``; returns ``out``."""
    from safetensors.torch import save_file

    from .loading import find_run_config, load_model, run_model_path
    from .model_file import VERSION, is_model_file, model_payload
    from .weights_io import load_file

    source, out = Path(source), Path(out)
    model_path = run_model_path(source) if source.is_dir() else source
    payload = load_file(model_path, "model file")
    if not is_model_file(payload):  # a run checkpoint (or another layout): the hub rebuilds it
        payload = model_payload(load_model(checkpoint=model_path), model_path)
    try:
        run_dir = find_run_config(model_path).parent
    except ModelError:
        run_dir = model_path.parent
    run = _run_config(run_dir)
    args = payload["args"]
    config: dict[str, Any] = {
        "format": "ovar-model", "version": VERSION, "kind": payload["kind"],
        "backbone": payload["backbone"], "args": args,
        "frames": args.get("frames", run.get("model", {}).get("frames")),
        "templates": args.get("templates"),
        "class_names": _class_names(run, run_dir),
        "recipe": run.get("recipe") or None,
    }
    # safetensors refuses tensors that share memory: give each its own contiguous copy.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in payload["state_dict"].items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "ovar-model", "kind": payload["kind"]})
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / CARD_FILE).write_text(model_card(config, sum(t.numel() for t in tensors.values())), encoding="utf-8")
    log.debug("exported %s to %s", model_path, out)
    return out


def load_exported(spec: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """The model of an exported folder, or of ``hf-hub:org/name[@revision]``."""
    from safetensors.torch import load_file as load_tensors

    from .model_file import VERSION, model_from_payload

    folder = resolve_hub(str(spec)) if str(spec).startswith(HUB_PREFIX) else Path(spec).expanduser()
    if not is_exported_folder(folder):
        raise ModelError(f"{spec}: not an exported ovar model (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if not isinstance(config.get("version"), int) or config["version"] > VERSION:
        raise ModelError(f"{folder / CONFIG_FILE}: model version {config.get('version')!r} is not one this "
                         f"ovar reads ({VERSION})")
    try:
        state = load_tensors(str(folder / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise ModelError(f"{folder / WEIGHTS_FILE}: cannot read weights ({str(exc).splitlines()[0]})") from exc
    model = model_from_payload({**config, "state_dict": state}, folder / WEIGHTS_FILE, device)
    model.class_names = config.get("class_names")  # a default label set for servers and demos
    return model


def resolve_hub(spec: str) -> Path:
    """The local folder of ``hf-hub:org/name[@revision]``: the Hub cache when it holds the
    model (always tried first, so it works offline), else a download."""
    repo, _, revision = spec[len(HUB_PREFIX):].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ModelError(f"{spec}: expected hf-hub:ORG/NAME")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(f"{spec}: loading from the Hub needs the huggingface_hub package "
                         f"(pip install huggingface_hub)") from None
    wanted = {"repo_id": repo, "revision": revision or None, "allow_patterns": [CONFIG_FILE, WEIGHTS_FILE, CARD_FILE]}
    try:
        return Path(snapshot_download(**wanted, local_files_only=True))
    except Exception:  # not cached: try the network below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        raise ModelError(f"{spec}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        return Path(snapshot_download(**wanted))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{spec}: not in the local Hugging Face cache and the download failed ({first})") from None


def _run_config(folder: Path) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` beside the model, or ``{}``."""
    import yaml

    path = folder / "config.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        log.warning("%s: unreadable, exporting without the run's settings", path)
        return {}
    return data if isinstance(data, dict) else {}


def _class_names(run: dict[str, Any], folder: Path) -> list[str] | None:
    source = (run.get("data") or {}).get("classes")
    if not source:
        return None
    from ..data.splits import read_classes

    try:
        return list(read_classes(source))
    except Exception:  # the class file may not travel with the run; the model still does
        log.warning("%s: class list %s not readable, exporting without class names", folder, source)
        return None


def model_card(config: dict[str, Any], parameters: int) -> str:
    """A short Markdown model card for an exported model."""
    backbone = config["backbone"]
    recipe = config.get("recipe") or {}
    names = config.get("class_names") or []
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    templates = config.get("templates")
    lines = [
        "---", "library_name: ovar", "tags: [video-classification, zero-shot, clip, action-recognition]", "---", "",
        f"# ovar {config['kind']} model", "",
        "An open-vocabulary video action recogniser: it scores a video against any list of action names.", "",
        "| | |", "| --- | --- |",
        f"| method | {config['kind']} |",
        f"| backbone | {backbone.get('name')} |",
        f"| frames per clip | {config.get('frames')} |",
        f"| prompt templates | {templates if isinstance(templates, str) else f'{len(templates or [])} custom'} |",
        f"| training recipe | {recipe.get('name', 'unknown')} |",
        f"| parameters | {parameters:,} |",
        f"| classes | {shown or 'not recorded'} |", "",
        "## Use", "", "```bash",
        'ovar predict video.mp4 --labels "surfing, skiing, dancing" --pretrained PATH_OR_hf-hub:ORG/NAME',
        "```", "", "```python", "import ovar", "",
        'model = ovar.load_model(pretrained="PATH_OR_hf-hub:ORG/NAME")',
        'print(ovar.predict("video.mp4", ["surfing", "skiing"], model=model).top)', "```", "",
        "Files: `config.json` (architecture, settings, class names), `model.safetensors` (weights).", "",
    ]
    return "\n".join(lines)
