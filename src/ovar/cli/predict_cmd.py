"""``ovar predict``: zero-shot classification of videos against a list of action names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..devices import PRECISIONS
from ..errors import OvarError
from .argtypes import checkpoint, device, finite_positive_float, new_file, non_negative_int, output_file, positive_int
from .argtypes import sampling, unit_interval, views


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify videos against free-text action names",
                       description="Rank action names for each video (file, frame folder or folder of videos). "
                                   "Every video appears in the output; one that fails carries its error.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video file, frame folder, folder of videos, @FILE (a list of paths, one per line) "
                        "or - (that list on standard input)")
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help='comma-separated action names, e.g. "surfing, skiing, dancing"')
    labels.add_argument("--labels-file", metavar="FILE",
                        help="action names: one per line, an id,name CSV, or JSON")
    labels.add_argument("--descriptions", metavar="FILE",
                        help='JSON {"0": "Name: one-sentence description", ...}')
    p.add_argument("--model", default="ViT-B-16", help="backbone name (see `ovar models`; default ViT-B-16)")
    p.add_argument("--pretrained", default="openai",
                   help="open_clip tag, local weights file, or 'none' for random weights (default openai)")
    p.add_argument("--checkpoint", type=checkpoint, metavar="RUN_DIR_OR_FILE", default=None,
                   help="a trained model: an `ovar train` run folder, a file from `ovar train`/`ovar convert`, "
                        "or a checkpoint of the original ActionCLIP/Text4Vis/EVL/Open-VCLIP/FROSTER code")
    p.add_argument("--clip", metavar="FILE", default=None,
                   help="the original CLIP weights an original checkpoint needs (Text4Vis, EVL, Open-VCLIP)")
    p.add_argument("--patch-ratio", type=unit_interval, default=None, metavar="R",
                   help="Open-VCLIP/FROSTER checkpoint: use R*CLIP + (1-R)*checkpoint weights (needs --clip)")
    p.add_argument("--frames", type=positive_int, default=None,
                   help="frames per clip (default 8, or what a --checkpoint model was trained with)")
    p.add_argument("--sampling", type=sampling, default="segment",
                   help="segment (one frame per equal segment), dense / TxS (stride), fps:TxS, or i3d:T "
                        "(Text4Vis's dense clips) (default segment)")
    p.add_argument("--views", type=views, default="1x1", help="temporal clips x spatial crops, e.g. 4x3 (default 1x1)")
    p.add_argument("--templates", default=None,
                   help="prompt templates: open_vclip (default), actionclip, text4vis, froster, plain, or a file")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="labels to show per video (default 5 for text, all for json/csv)")
    p.add_argument("--format", choices=("text", "json", "jsonl", "csv"), default="text",
                   help="output format; jsonl writes each video's line as soon as it is scored")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="clips per forward pass (default: 8 on CPU, sized from free memory on a GPU)")
    p.add_argument("--device", type=device, default="auto",
                   help="auto, cpu, cuda, cuda:N or mps (default auto: cuda if available, else cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="inference precision (default auto: bf16 (or fp16) on a GPU, fp32 on CPU; fp16 needs a GPU)")
    p.add_argument("--compile", action="store_true",
                   help="compile the video encoder with torch.compile (slow first batch; CPU needs a C++ compiler)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="decoding worker processes (default: automatic; 0 = this process)")
    p.add_argument("--segments", type=finite_positive_float, default=None, metavar="SECONDS",
                   help="also classify consecutive windows of this many seconds")
    p.add_argument("--plot", type=new_file, metavar="FILE", default=None, help="with --segments: draw the timeline as a PNG")
    p.add_argument("--output", "-o", type=output_file, metavar="FILE", default=None, help="write the results here instead of stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.plot and args.segments is None:
        raise OvarError("--plot needs --segments SECONDS")
    from ..devices import resolve_device
    from ..data import read_labels_file
    from ..text import parse_labels

    labels = None
    if args.labels is not None:
        labels = parse_labels(args.labels)
    elif args.labels_file is not None:
        labels = read_labels_file(args.labels_file)
    device = resolve_device(args.device)
    paths, listed = _gather_paths(args.paths)  # fail on missing paths before loading a model
    if args.checkpoint is None and (args.clip is not None or args.patch_ratio is not None):
        raise OvarError("--clip and --patch-ratio apply to a --checkpoint")

    from ..inference import predict
    from ..models.loading import load_model

    model = load_model(args.model, args.pretrained, device=device, frames=args.frames,
                       checkpoint=args.checkpoint, clip=args.clip, patch_ratio=args.patch_ratio)
    top_k = args.top_k if args.top_k is not None else (5 if args.format == "text" else None)
    stream = _Stream(args.output) if args.format == "jsonl" else None
    try:
        results = predict(paths if listed or len(paths) > 1 else paths[0], labels, model=model,
                          frames=args.frames, sampling=args.sampling, views=args.views, templates=args.templates,
                          descriptions=args.descriptions, top_k=top_k, batch_size=args.batch_size,
                          segments=args.segments, workers=args.workers, progress=True,
                          on_result=stream.write if stream else None, missing_ok=True,
                          precision=args.precision, compile=args.compile)
    finally:
        if stream is not None:
            stream.close()
    results = results if isinstance(results, list) else [results]
    if stream is None:
        _write(results, args)
    for result in results:
        if result.warning is not None:
            print(f"ovar: warning: {result.video}: {result.warning}", file=sys.stderr)
    failed = [r for r in results if r.error is not None]
    for result in failed:
        print(f"ovar: skipped {result.video}: {result.error}", file=sys.stderr)
    if args.plot:
        _plot(results, Path(args.plot))
    if failed:
        print(f"ovar: {len(failed)} of {len(results)} videos failed", file=sys.stderr)
        return 1
    return 0


def _gather_paths(raw: list[str]) -> tuple[list[str], bool]:
    """The videos named on the command line, ``@FILE`` lists and ``-`` (standard input).

    Returns the paths and whether any came from a list. A path typed on the command line
    must exist (a typo stops the run before any work); a listed one that does not is
    reported in the output as a failed video, so one stale line never loses a long run.
    """
    from ..errors import VideoDecodeError
    from ..inference.inputs import read_path_list

    if raw.count("-") > 1:
        raise OvarError("'-' (standard input) given twice")
    paths: list[str] = []
    listed = False
    for item in raw:
        if item == "-":
            paths.extend(read_path_list("-"))
            listed = True
        elif item.startswith("@") and len(item) > 1:  # a file really named '@x' is passed as ./@x
            paths.extend(read_path_list(item[1:]))
            listed = True
        elif not Path(item).exists():
            raise VideoDecodeError(item, "file not found")
        else:
            paths.append(item)
    return paths, listed


class _Stream:
    """JSON lines written and flushed one result at a time; the output file is created at the first one."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.out = None if target else sys.stdout

    def write(self, result) -> None:
        from .output import write_jsonl_line

        if self.out is None:
            self.out = open(self.target, "w", encoding="utf-8", newline="")
        write_jsonl_line(result, self.out)

    def close(self) -> None:
        if self.out is not None and self.out is not sys.stdout:
            self.out.close()


def _write(results, args: argparse.Namespace) -> None:
    from .output import WRITERS

    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            WRITERS[args.format](results, out)
    else:
        WRITERS[args.format](results, sys.stdout)


def _plot(results, target: Path) -> None:
    from ..inference.timeline import plot_timeline

    drawable = [r for r in results if r.segments]
    for result in drawable:
        path = target if len(drawable) == 1 else target.with_name(f"{target.stem}-{Path(result.video).stem}{target.suffix}")
        plot_timeline(result, path)
        print(f"ovar: timeline written to {path}", file=sys.stderr)
