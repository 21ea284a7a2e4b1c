"""``ovar cache build --config FILE``: fill EVL's frozen-feature cache before training."""

from __future__ import annotations

import argparse

from ..errors import OvarError
from .argtypes import device, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="frozen-backbone feature caches (EVL)")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    actions.required = True
    build = actions.add_parser("build", help="compute and store the features of every cached view")
    build.add_argument("--config", metavar="FILE", required=True, help="the training config (recipe.cache.*)")
    build.add_argument("--batch-size", type=positive_int, default=8, help="clips encoded at once (default 8)")
    build.add_argument("--device", type=device, default="cpu",
                       help="auto, cpu, cuda, cuda:N or mps for the backbone (default cpu)")
    build.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="configuration overrides")
    build.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..recipes import get_recipe

    from ..devices import resolve_device

    torch_device = resolve_device(args.device)
    overrides = [*args.overrides, "recipe.cache.enabled=true"]
    config = load_config(args.config, overrides)
    recipe = get_recipe(config.recipe.get("name", ""))(config)
    if not hasattr(recipe, "build_cache"):
        raise OvarError(f"recipe {config.recipe.get('name')!r} has no feature cache (only evl does)")
    try:
        cache = recipe.build_cache(batch_size=args.batch_size, device=torch_device)
    except RuntimeError as exc:
        raise OvarError(str(exc)) from None
    print(f"feature cache complete: {cache.views} view(s) of {cache.num_videos} videos in {cache.directory}")
    return 0
