"""``ovar eval``: the papers' evaluation protocols, or one trained run on its config's list.

``ovar eval --protocol NAME --root DATASET_DIR --out DIR ...`` runs a protocol (see
docs/protocols.md); ``ovar eval --config FILE --checkpoint FILE`` (no ``--protocol``)
evaluates a training checkpoint on ``data.val_list`` and prints the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..devices import PRECISIONS
from ..errors import OvarError
from ..protocols import PROTOCOLS
from ..protocols import TRAINING_PROTOCOLS as TRAINING
from .argtypes import checkpoint, device, non_negative_int, output_dir, positive_int, unit_interval, views



def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def _fusion(text: str) -> str:
    from ..eval.views import FUSION_RULES

    if text not in FUSION_RULES:
        raise argparse.ArgumentTypeError(f"unknown fusion '{text}' (choose from {', '.join(FUSION_RULES)})")
    return text


def _name_list(text: str) -> list[str]:
    return [v.strip().lower() for v in text.split(",") if v.strip()]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="run an evaluation protocol (or evaluate a trained run)",
                       description="Evaluate with a protocol of the papers: closed, cross-dataset, half-classes, "
                                   "base2novel, few-shot. Without --protocol: a training checkpoint on the "
                                   "config's data.val_list.")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None, help="the protocol to run")
    p.add_argument("--root", metavar="DIR", help="dataset root that list paths are relative to")
    p.add_argument("--out", type=output_dir, metavar="DIR", default=None,
                   help="output folder (protocols: scores, runs, report; without --protocol: run.out_dir)")
    p.add_argument("--lists", metavar="DIR", default=None,
                   help="lists folder laid out like the bundled splits/<protocol> (default: the bundled lists)")
    p.add_argument("--datasets", type=_name_list, default=None,
                   help="comma-separated datasets (cross: ucf101,hmdb51,k600; half: ucf101,hmdb51; "
                        "base2novel: k400,hmdb51,ucf101,ssv2; default: all with lists)")
    p.add_argument("--splits", type=_int_list, default=None, help="base2novel: training splits to run, e.g. 1 or 1,2")
    p.add_argument("--list", dest="lists_eval", action="append", metavar="FILE", default=None,
                   help="closed / few-shot: evaluation list (repeat for several)")
    p.add_argument("--classes", metavar="FILE|NAME", default=None,
                   help="closed / few-shot: class list of --list (a file, or a bundled list: k400, ucf101, ...)")
    p.add_argument("--train-list", metavar="FILE", default=None, help="few-shot: the list K-shot subsets are drawn from")
    p.add_argument("--shots", type=_int_list, default=[2, 4, 8, 16], help="few-shot: K values (default 2,4,8,16)")
    model = p.add_argument_group("what is evaluated")
    model.add_argument("--checkpoint", type=checkpoint, metavar="FILE|RUN_DIR", default=None,
                       help="an ovar model file or `ovar train` run folder; with --config/--recipe a training checkpoint")
    model.add_argument("--clip", metavar="FILE", default=None,
                       help="with an original codebase's --checkpoint: the CLIP file it was trained from")
    model.add_argument("--patch-ratio", type=unit_interval, default=None, metavar="R",
                       help="Open-VCLIP/FROSTER: evaluate R*theta_CLIP + (1-R)*theta (the released evaluation: 0.5)")
    model.add_argument("--model", default=None,
                       help="bare CLIP backbone name, e.g. ViT-B-16 (frozen baseline); with --recipe/--config: "
                            "the recipe's backbone (model.backbone)")
    model.add_argument("--pretrained", default=None,
                       help="open_clip tag, weights file or 'none' (default openai); with --recipe/--config: "
                            "the recipe's backbone weights (model.pretrained)")
    model.add_argument("--templates", default=None, help="with --model: prompt templates (default open_vclip)")
    model.add_argument("--config", metavar="FILE", default=None, help="recipe config (YAML differences from defaults)")
    model.add_argument("--recipe", default=None, help="recipe name, or 'module:name' for a user module")
    how = p.add_argument_group("how")
    how.add_argument("--views", type=views, default=None, help="temporal clips x spatial crops, e.g. 3x1 (default: eval.views, 1x1)")
    how.add_argument("--fusion", type=_fusion, default=None,
                     help="view fusion: features, mean_softmax, sum_logits, mean_logits (default: the method's own)")
    how.add_argument("--batch-size", type=positive_int, default=None, help="videos per batch (default: data.batch_size)")
    how.add_argument("--workers", type=non_negative_int, default=None, help="decoding workers (default: data.workers)")
    how.add_argument("--precision", choices=PRECISIONS, default=None,
                     help="mixed precision on GPU (default: run.precision, auto)")
    how.add_argument("--compile", action="store_true",
                     help="compile the video encoder with torch.compile (slow first batch; CPU needs a C++ compiler)")
    how.add_argument("--device", type=device, default=None,
                     help="auto, cpu, cuda, cuda:N or mps (default: run.device, auto)")
    how.add_argument("--descriptions", metavar="FILE", default=None,
                     help='class descriptions JSON {"0": "Name: description"}, matched to classes by name')
    how.add_argument("--seed", type=non_negative_int, default=None, help="seed of K-shot draws, training, clips")
    how.add_argument("--strict", action="store_true", help="stop at the first undecodable video")
    how.add_argument("--allow-outside-root", action="store_true",
                     help="accept list paths that lead outside --root (absolute, or climbing out with ..)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="configuration overrides, e.g. data.frames=16")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.device is not None:  # an absent GPU is a usage error before any work
        from ..devices import resolve_device

        resolve_device(args.device)
    if args.protocol is None:
        return _run_checkpoint_eval(args)
    from ..protocols import run as P
    from ..protocols.defs import BUNDLED_FOLDER
    from ..protocols.lists import BundledLists, FileLists, FolderLists
    from ..protocols.sources import bare_clip, model_file
    from ..protocols.training import RecipeSpec

    if not args.root or not args.out:
        raise OvarError(f"--protocol {args.protocol} needs --root DATASET_DIR and --out DIR")
    spec = RecipeSpec(args.config, list(args.overrides), args.recipe, _training_overrides(args))
    config = spec.config()
    settings = _settings(args, config)
    if settings.compile:  # no C++ compiler or torch.compile: a usage error before any work
        from ..inference.compiling import check_compile_available

        check_compile_available(settings.torch_device())
    if args.checkpoint:
        source = spec.checkpoint(args.checkpoint, settings) if args.config or args.recipe else \
            model_file(args.checkpoint, settings, args.clip, args.patch_ratio)
    elif args.model and not (args.config or args.recipe):
        source = bare_clip(args.model, args.pretrained or "openai", settings, args.templates)
    elif args.protocol in TRAINING and (args.recipe or config.recipe.get("name")):
        spec.check(config)
        source = None  # trained inside the protocol
    else:
        extra = ", or --recipe/--config to train" if args.protocol in TRAINING else ""
        raise OvarError(f"--protocol {args.protocol}: say what to evaluate: --checkpoint FILE|RUN_DIR "
                        f"or --model NAME --pretrained TAG{extra}")
    what = {"model": source.label if source else f"recipe {spec.name(config)}"}

    if args.protocol == "closed":
        lists = FileLists(_named_lists(args, "closed"))
        for part in lists.parts(""):  # a missing or malformed list stops before the output folder exists
            lists.read("", part)
        run_ = P.ProtocolRun("closed", args.out, settings, {**what, "lists": args.lists_eval, "classes": args.classes})
        report = P.run_closed(run_, lists, source)
    elif args.protocol == "few-shot":
        if source is not None:
            raise OvarError("--protocol few-shot trains a model per K: give --recipe/--config, not --checkpoint/--model")
        if not args.train_list:
            raise OvarError("--protocol few-shot needs --train-list FILE")
        from ..data.lists import read_list

        _named_lists(args, "few-shot")
        for path in [args.train_list, *args.lists_eval]:
            read_list(path)  # a missing or malformed list stops before the output folder exists
        run_ = P.ProtocolRun("few-shot", args.out, settings,
                             {**what, "train": args.train_list, "lists": args.lists_eval, "shots": args.shots})
        report = P.run_few_shot(run_, spec, args.train_list, args.lists_eval, args.classes, args.shots)
    else:
        folder = BUNDLED_FOLDER[args.protocol]
        lists = FolderLists(args.lists) if args.lists else BundledLists(folder)
        if args.lists and args.protocol == "cross-dataset":  # also Text4Vis's K600 lists folder
            from ..protocols.text4vis_k600 import cross_lists

            lists = cross_lists(args.lists)
        run_ = P.ProtocolRun(args.protocol, args.out, settings, {**what, "lists": lists.describe()})
        if args.protocol == "cross-dataset":
            report = P.run_cross(run_, lists, source, args.datasets)
        elif args.protocol == "half-classes":
            # Full-class list: bundled cross/<dataset>_full; with --lists, DIR/<dataset>/full.
            full_lists = lists if args.lists else BundledLists("cross")
            full_split = (lambda d: f"{d.folder}/full") if args.lists else (lambda d: d.full_split)
            report = P.run_half(run_, lists, full_lists, full_split, source, args.datasets)
        else:
            report = P.run_base2novel(run_, lists, args.datasets, model=source,
                                      spec=spec if source is None else None, splits=args.splits)
    print(json.dumps({"report": str(run_.out / "report.md"), "summary": report["summary"],
                      "scored": report.get("scored", {})}))
    # Numbers over fewer videos than listed are not the protocol's numbers: say so in the status.
    incomplete = any(p["failed"] or p["missing"] for p in report["parts"]) or report["failures"]["missing"]
    if incomplete:
        print("ovar: not every listed video was scored (see 'Videos scored' in the report)", file=sys.stderr)
    return 1 if incomplete else 0


def _named_lists(args: argparse.Namespace, protocol: str) -> dict[str, tuple[str, str]]:
    from ..protocols.run import unique_names

    if not args.lists_eval or not args.classes:
        raise OvarError(f"--protocol {protocol} needs --list FILE and --classes FILE")
    return dict(zip(unique_names(args.lists_eval), ((path, args.classes) for path in args.lists_eval)))


def _training_overrides(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The options that set configuration keys, as typed (key, value) pairs."""
    extra: list[tuple[str, object]] = []
    if args.seed is not None:
        extra += [("run.seed", args.seed), ("data.seed", args.seed)]
    if args.device:
        extra.append(("run.device", args.device))
    if args.config or args.recipe:  # --model/--pretrained name the recipe's backbone, as in ovar train
        if args.model:
            extra.append(("model.backbone", args.model))
        if args.pretrained is not None:
            extra.append(("model.pretrained", args.pretrained))
    if args.patch_ratio is not None and (args.config or args.recipe):
        extra.append(("recipe.patch_ratio", args.patch_ratio))  # Open-VCLIP/FROSTER's own option
    if args.fusion:
        extra.append(("eval.fusion", args.fusion))
    if args.strict:
        extra.append(("data.strict", True))
    return extra


def _settings(args: argparse.Namespace, config):
    from pathlib import Path

    from ..protocols.sources import EvalSettings, descriptions_by_name

    return EvalSettings(
        root=Path(args.root), views=args.views or config.eval.views, frames=config.data.frames,
        sampling=config.data.sampling, fusion=args.fusion,
        batch_size=args.batch_size or config.data.batch_size,
        workers=config.data.workers if args.workers is None else args.workers,
        precision=args.precision or config.run.precision, device=args.device or config.run.device,
        seed=config.run.seed if args.seed is None else args.seed, strict=args.strict or config.data.strict,
        descriptions=descriptions_by_name(args.descriptions) if args.descriptions else None,
        allow_outside_root=args.allow_outside_root, compile=args.compile)


def _run_checkpoint_eval(args: argparse.Namespace) -> int:
    """``ovar eval [--config ...] --checkpoint FILE|RUN_DIR``: the run's evaluation list,
    metrics as JSON. A run folder or a checkpoint in one brings its own config; a model
    file's weights are evaluated in the recipe's model."""
    from ..models.loading import find_run_config, is_training_checkpoint, run_model_path
    from ..models.weights_io import load_exact, load_file
    from ..train import distributed, evaluate
    from .train_cmd import load_run

    if not args.checkpoint:
        raise OvarError("give --protocol NAME, or --checkpoint FILE to evaluate a run on its data.val_list")
    if args.compile:
        raise OvarError("--compile applies to --protocol runs")
    file = Path(args.checkpoint)
    file = run_model_path(file) if file.is_dir() else file
    if args.config is None and args.recipe is None:
        args.config = str(find_run_config(file))
    # The checkpoint holds every weight: no pretrained download to build the model first.
    args.overrides = [*args.overrides, *_training_overrides(args), "model.pretrained=none"]
    config, recipe = load_run(args)
    payload = load_file(file, "checkpoint")
    with distributed.session(config.run.device) as ctx:
        model = recipe.build_model()
        if is_training_checkpoint(payload):
            load_exact(model, payload["model"], file, "the recipe's")
        elif hasattr(recipe, "inner"):  # a model file: its weights go into the recipe's model
            from ..models.loading import load_model

            load_exact(recipe.inner(model), load_model(checkpoint=file).state_dict(), file, "the recipe's")
        else:
            raise OvarError(f"{file}: not a training checkpoint of recipe '{config.recipe.get('name')}'")
        metrics = evaluate(config, recipe, model.to(ctx.device))
        if ctx.is_main:
            print(json.dumps(metrics))
    return 0
