"""``ovar serve``: load a model once and classify videos over HTTP (and from a web page)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..devices import PRECISIONS
from ..errors import OvarError
from .argtypes import device, non_negative_float, port, positive_float, positive_int, unit_interval


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve zero-shot classification over HTTP, with a web page",
                       description="Load a model once and serve POST /v1/classify, GET /v1/health, GET /v1/models, "
                                   "the OpenAPI page (/docs) and a web page (/). Needs `pip install 'ovar[serve]'`.")
    model = p.add_argument_group("model")
    model.add_argument("--model", default="ViT-B-16", help="backbone name (default ViT-B-16)")
    model.add_argument("--pretrained", default="openai",
                       help="open_clip tag, weights file, `ovar export` folder, hf-hub:ORG/NAME, or 'none'")
    model.add_argument("--checkpoint", metavar="RUN_DIR_OR_FILE", default=None,
                       help="a trained model: an `ovar train` run, a model file from `ovar train`/`ovar convert`, "
                            "an `ovar export` folder, or an original ActionCLIP/Text4Vis/EVL/Open-VCLIP/FROSTER checkpoint")
    model.add_argument("--clip", metavar="FILE", default=None, help="the original CLIP weights an original checkpoint needs")
    model.add_argument("--patch-ratio", type=unit_interval, default=None, metavar="R",
                       help="Open-VCLIP/FROSTER checkpoint: R*CLIP + (1-R)*checkpoint weights")
    model.add_argument("--frames", type=positive_int, default=None, help="frames per clip (default: the model's)")
    model.add_argument("--templates", default=None, help="prompt templates (default: the model's)")
    model.add_argument("--device", type=device, default="auto",
                       help="auto, cpu, cuda, cuda:N or mps (default auto: cuda if available, else cpu)")
    model.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="inference precision (default auto: bf16 (or fp16) on a GPU, fp32 on CPU)")
    model.add_argument("--sampling", default="segment", help="frame sampling, as for `ovar predict`")
    model.add_argument("--label-set", action="append", default=[], metavar="NAME=FILE",
                       help="a named label set clients can ask for: a class-list file or a bundled list name "
                            "(k400, ucf101, ...); repeatable")
    server = p.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    server.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    server.add_argument("--root", metavar="DIR", default=None,
                        help="folder whose videos clients may name by path (default: uploads only)")
    server.add_argument("--max-batch", type=positive_int, default=16, help="clips per forward pass (default 16)")
    server.add_argument("--batch-wait-ms", type=non_negative_float, default=5.0,
                        help="how long a clip waits for others to share its forward pass (default 5)")
    server.add_argument("--max-concurrency", type=positive_int, default=2,
                        help="videos decoding at once (default 2)")
    server.add_argument("--queue-size", type=positive_int, default=32,
                        help="requests in progress at once; more get 503 with Retry-After (default 32)")
    server.add_argument("--max-upload-mb", type=positive_float, default=100.0,
                        help="largest upload in MiB; larger get 413 (default 100)")
    server.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (form uploads)
        import uvicorn
    except ImportError as exc:
        raise OvarError(f"ovar serve needs the serve extra ({exc.name} is missing): pip install 'ovar[serve]'") from None
    if args.root is not None and not Path(args.root).is_dir():
        raise OvarError(f"--root {args.root}: not a folder")
    if args.batch_wait_ms < 0:
        raise OvarError("--batch-wait-ms must not be negative")
    if args.checkpoint is None and (args.clip is not None or args.patch_ratio is not None):
        raise OvarError("--clip and --patch-ratio apply to a --checkpoint")
    label_sets = _label_sets(args.label_set)

    from ..models.loading import load_model
    from ..serve.app import create_app
    from ..serve.service import ClassifyService, ServiceOptions
    from ..devices import resolve_device

    device = resolve_device(args.device)
    model = load_model(args.model, args.pretrained, device=device, frames=args.frames, templates=args.templates,
                       checkpoint=args.checkpoint, clip=args.clip, patch_ratio=args.patch_ratio)
    if getattr(model, "class_names", None) and "model" not in label_sets:
        label_sets["model"] = list(model.class_names)  # an exported model's own classes
    options = ServiceOptions(max_batch=args.max_batch, batch_wait_s=args.batch_wait_ms / 1000,
                             max_concurrency=args.max_concurrency, queue_size=args.queue_size,
                             sampling=args.sampling, precision=args.precision)
    source = args.checkpoint or (args.pretrained if args.pretrained else "none")
    service = ClassifyService(model, label_sets=label_sets, options=options,
                              description={"id": str(source) if args.checkpoint else f"{args.model}/{source}",
                                           "checkpoint": args.checkpoint, "pretrained": args.pretrained})
    app = create_app(service, root=args.root, max_upload_bytes=int(args.max_upload_mb * 2**20))
    print(f"ovar: serving on http://{args.host}:{args.port} (web page at /, API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0


def _label_sets(specs: list[str]) -> dict[str, list[str]]:
    from ..data.splits import read_classes

    sets: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise OvarError(f"--label-set {spec!r}: expected NAME=FILE")
        sets[name.strip()] = list(read_classes(source.strip()))
    return sets
