"""`ovar eval` with a recipe: --model/--pretrained name the recipe's backbone (as in
`ovar train`), and a bad `recipe.*` option stops the protocol before it writes anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovar.cli import build_parser, main
from ovar.cli.eval_cmd import _training_overrides
from ovar.protocols.training import RecipeSpec


def _args(*argv: str):
    return build_parser().parse_args(["eval", "--protocol", "base2novel", "--root", ".", "--out", "o", *argv])


def test_model_and_pretrained_set_the_recipes_backbone():
    args = _args("--recipe", "actionclip", "--model", "tiny", "--pretrained", "none")
    config = RecipeSpec(None, [], "actionclip", _training_overrides(args)).config()
    assert (config.model.backbone, config.model.pretrained) == ("tiny", "none")
    # Only what was given is set: the recipe's own weights stay when --pretrained is absent.
    args = _args("--recipe", "actionclip", "--model", "tiny")
    config = RecipeSpec(None, [], "actionclip", _training_overrides(args)).config()
    assert config.model.backbone == "tiny" and config.model.pretrained == "openai"
    # Without a recipe they name a bare CLIP, and nothing goes into a config.
    assert ("model.backbone", "tiny") not in _training_overrides(_args("--model", "tiny"))


@pytest.mark.parametrize("option, key", [("recipe.fusion=abc", "recipe.fusion"),
                                         ("recipe.visual_lr_ratio=-0.25", "recipe.visual_lr_ratio")])
def test_bad_recipe_option_stops_a_protocol_before_it_writes(option, key, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--protocol", "base2novel", "--recipe", "actionclip", "--model", "tiny",
                 "--pretrained", "none", "--root", str(tmp_path), "--datasets", "ucf101", "--out", str(out), option])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ovar: error: ") and key in err[0]
    assert not out.exists()
