"""Open-VCLIP and FROSTER recipes on generated videos with the tiny backbone: training,
interpolated weight optimisation (IWO), epoch averaging, patching, determinism, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ovar.cli import main
from ovar.config import ConfigError, load_config
from ovar.recipes import get_recipe
from ovar.train import train
from labelled_videos import CLASSES, write_labelled_videos

DESCRIPTIONS = {"0": "Archery: A person draws a bow and shoots an arrow at a target.",
                "1": "Surfing water: Someone rides a board on a breaking ocean wave.",
                "2": "Playing guitar: A musician strums the strings of a guitar."}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_labelled_videos(tmp_path_factory.mktemp("videos"), 2, val_every=2)
    (root / "descriptions.json").write_text(json.dumps(DESCRIPTIONS))
    return root


def _config(root, out, recipe, *extra):
    options = [f"recipe.descriptions={root / 'descriptions.json'}"] if recipe == "froster" else []
    return load_config(None, [
        f"recipe.name={recipe}", "model.backbone=tiny", "model.pretrained=none", f"data.root={root}",
        f"data.train_list={root / 'train.txt'}", f"data.val_list={root / 'val.txt'}",
        f"data.classes={root / 'classes.csv'}", "data.frames=4", "data.batch_size=3", "data.workers=0",
        "schedule.epochs=2", "schedule.warmup_epochs=0", "optim.lr=1e-3", f"run.out_dir={out}",
        "run.device=cpu", "eval.views=2x1", *options, *extra])


def _recipe(config):
    return get_recipe(config.recipe["name"])(config)


def _batch(recipe, model, n=3):
    data = recipe.train_dataset(model)
    items = [data[i] for i in range(n)]
    return {"video": torch.stack([it["video"] for it in items]), "label": torch.tensor([it["label"] for it in items])}


@pytest.mark.parametrize("name", ["open_vclip", "froster"])
def test_training_runs_averages_and_the_run_predicts(name, dataset, tmp_path, capsys):
    config = _config(dataset, tmp_path / "run", name, "run.keep_last=3")
    result = train(config, _recipe(config))
    assert result.completed and result.metrics["num_samples"] == 3
    saved = torch.load(tmp_path / "run" / "weight_average.pt", weights_only=True)
    assert saved["epochs"] == [2]  # the original's default: epochs 2..last
    # With one epoch averaged, the final weights are those of epoch 2.
    last = torch.load(tmp_path / "run" / "checkpoints" / "epoch_0002.pt", weights_only=True)["model"]
    final = result.model.state_dict()
    assert all(torch.equal(final[k], last[k]) for k in saved["sum"])
    capsys.readouterr()
    code = main(["predict", str(dataset / "c1_0.mp4"), "--labels", ", ".join(CLASSES),
                 "--checkpoint", str(tmp_path / "run"), "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out[0]["predictions"]) == 3


def test_finalize_loads_the_mean_of_the_averaged_epochs(dataset, tmp_path):
    config = _config(dataset, tmp_path, "open_vclip", "schedule.epochs=3", "run.keep_last=5",
                     "eval.every_n_epochs=0")
    result = train(config, _recipe(config))
    ckpts = [torch.load(tmp_path / "checkpoints" / f"epoch_{e:04d}.pt", weights_only=True)["model"] for e in (2, 3)]
    trained = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trained and all(n.startswith("model.backbone.clip.") for n in trained)
    final = dict(result.model.named_parameters())
    for name in trained:
        torch.testing.assert_close(final[name].detach(), (ckpts[0][name] + ckpts[1][name]) / 2, atol=1e-6, rtol=0)
    # The text tower is frozen: it never changed.
    first = torch.load(tmp_path / "checkpoints" / "epoch_0002.pt", weights_only=True)["model"]
    key = "model.backbone.clip.token_embedding.weight"
    assert torch.equal(first[key], result.model.state_dict()[key])
    # The offline tool on the run's checkpoints gives the same average.
    assert main(["weights", "average", str(tmp_path), "--out", str(tmp_path / "avg.pt")]) == 0
    offline = torch.load(tmp_path / "avg.pt", weights_only=True)["model"]
    for name in trained:
        torch.testing.assert_close(offline[name], final[name].detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("chain_rule", [False, True])
def test_iwo_gradient_is_the_sum_of_both_gradients(dataset, tmp_path, chain_rule):
    """grad = ∇CE(θ) + λ·∇CE(θ') (× (1 − α) with the chain rule), θ' materialised separately."""
    config = _config(dataset, tmp_path, "open_vclip", f"recipe.iwo_chain_rule={str(chain_rule).lower()}")
    recipe = _recipe(config)
    torch.manual_seed(0)
    model = recipe.build_model()
    with torch.no_grad():  # move away from the anchor so that θ' differs from θ
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    batch = _batch(recipe, model)
    torch.manual_seed(3)
    out = recipe.training_step(model, batch)
    out["loss"].backward()
    alpha, ratio = out["alpha"], recipe.opts.iwo_loss_ratio
    torch.manual_seed(3)  # the step's draw, replayed: α ~ U(0, 0.6)
    assert alpha == pytest.approx(0.6 * float(torch.rand((), dtype=torch.float64)), abs=1e-12)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    import copy

    plain, interp = copy.deepcopy(model), copy.deepcopy(model)
    anchor = recipe.anchor(model, torch.device("cpu"))
    with torch.no_grad():
        params = dict(interp.model.named_parameters())
        for name, target in anchor.items():
            params[name].mul_(1 - alpha).add_(target, alpha=alpha)
    for m in (plain, interp):
        m.zero_grad()
        F.cross_entropy(m(batch["video"]), batch["label"]).backward()
    factor = ratio * ((1 - alpha) if chain_rule else 1.0)
    p_plain, p_interp = dict(plain.named_parameters()), dict(interp.named_parameters())
    for name in names:
        want = p_plain[name].grad + factor * p_interp[name].grad
        torch.testing.assert_close(got[name], want, atol=1e-5, rtol=1e-4, msg=name)


def test_iwo_trains_with_an_extra_trainable_module(dataset, tmp_path):
    from ovar.recipes.open_vclip import OpenVCLIPRecipe
    from ovar.train.trainable import Trainable

    class Recipe(OpenVCLIPRecipe):
        def build_model(self):
            trainer = super().build_model()
            model = trainer.model
            model.logit_bias = nn.Parameter(torch.zeros(len(self.class_names)))
            forward = model.forward
            model.forward = lambda video, classifier: forward(video, classifier) + model.logit_bias
            return self.with_trainable(trainer)

        def trainable(self):  # what trains is declared: the extra module joins the declaration
            return [*super().trainable(), Trainable("bias", ("model.logit_bias",))]

    config = _config(dataset, tmp_path, "open_vclip", "eval.every_n_epochs=0", "schedule.epochs=1")
    recipe = Recipe(config)
    torch.manual_seed(0)
    model = recipe.build_model()
    batch = _batch(recipe, model)
    out = recipe.training_step(model, batch)
    out["loss"].backward()
    bias = model.model.logit_bias
    assert "model.logit_bias" not in recipe.anchor(model, torch.device("cpu"))
    # The bias is not interpolated: its gradient is the sum over both passes of dCE/dlogits.
    logits, interp = model(batch["video"], anchor=recipe.anchor(model, torch.device("cpu")), alpha=out["alpha"])
    onehot = F.one_hot(batch["label"], len(CLASSES)).float()
    want = ((logits.softmax(-1) - onehot).mean(0) + recipe.opts.iwo_loss_ratio * (interp.softmax(-1) - onehot).mean(0))
    torch.testing.assert_close(bias.grad, want.detach(), atol=1e-5, rtol=1e-4)
    result = train(config, Recipe(config))
    assert result.completed and result.model.model.logit_bias.abs().sum() > 0


_DRAWS = """
import sys, json
sys.path.insert(0, {tests!r})
from ovar.train.loop import _seed_step
from ovar.recipes.iwo import sample_alpha
from test_open_vclip_recipe import _config, _recipe
from pathlib import Path
recipe = _recipe(_config(Path({root!r}), Path({out!r}), "froster"))
draws = []
for rank in (0, 1):
    for step in range(4):
        _seed_step(0, 0, step, 0, rank)
        draws.append([sample_alpha(0.0, 0.6), recipe.draw_templates()[0]])
print(json.dumps(draws))
"""


def test_alpha_and_template_draws_are_deterministic_across_processes(dataset, tmp_path):
    code = _DRAWS.format(tests=str(Path(__file__).parent), root=str(dataset), out=str(tmp_path))
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                      text=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[0] == runs[1]
    rank0, rank1 = runs[0][:4], runs[0][4:]
    assert len({a for a, _ in rank0}) == 4 and rank0 != rank1  # differ per step and per rank
    assert all(0 <= t < 28 for _, t in runs[0])


def test_resume_gives_identical_weights(dataset, tmp_path):
    """α draws, clips and the running average are replayed exactly after an interruption."""
    extra = ("eval.every_n_epochs=0", "schedule.epochs=3", "recipe.average_from_epoch=1")
    straight = train(_config(dataset, tmp_path / "a", "open_vclip", *extra),
                     _recipe(_config(dataset, tmp_path / "a", "open_vclip", *extra)))
    config = _config(dataset, tmp_path / "b", "open_vclip", *extra)
    assert not train(config, _recipe(config), stop_after_epoch=2).completed
    config = _config(dataset, tmp_path / "b", "open_vclip", *extra, "run.resume=auto")
    resumed = train(config, _recipe(config))
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(tmp_path / "b" / "weight_average.pt", weights_only=True)["epochs"] == [1, 2, 3]


def test_patch_ratio_moves_the_evaluated_weights_towards_clip(dataset, tmp_path):
    recipe = _recipe(_config(dataset, tmp_path, "open_vclip", "recipe.patch_ratio=0.25"))
    torch.manual_seed(0)
    model = recipe.build_model()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    evaluated = recipe.eval_model(model)
    anchor = recipe.anchor(model, torch.device("cpu"))
    params, trained = dict(evaluated.model.named_parameters()), dict(model.model.named_parameters())
    for name, target in anchor.items():
        torch.testing.assert_close(params[name], 0.25 * target + 0.75 * trained[name], atol=1e-6, rtol=0)
    assert evaluated is not model  # the trained weights are left as they are


def test_froster_distillation_starts_at_zero_and_the_teacher_stays_frozen(dataset, tmp_path):
    recipe = _recipe(_config(dataset, tmp_path, "froster"))
    torch.manual_seed(0)
    model = recipe.build_model()
    assert not [k for k in model.state_dict() if "teacher" in k]  # not checkpointed
    batch = _batch(recipe, model)
    out = recipe.training_step(model, batch)
    # Student = teacher at the start (same weights; zero-initialised projectors), but the
    # student's temporal attention changes its frame features: only the text term is zero.
    assert float(out["distill_text"]) == pytest.approx(0.0, abs=1e-6)
    assert float(out["distill_video"]) > 0
    teacher_before = {k: v.clone() for k, v in recipe.teacher(model, torch.device("cpu")).backbone.state_dict().items()}
    params = [p for g in recipe.param_groups(model) for _, p in g.params]
    assert any(p is model.projector_v[0].weight for p in params)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    out["loss"].backward()
    optimizer.step()
    teacher = recipe.teacher(model, torch.device("cpu")).backbone.state_dict()
    assert all(torch.equal(teacher[k], teacher_before[k]) for k in teacher)


def test_froster_rejects_bad_options(dataset, tmp_path):
    with pytest.raises(ConfigError, match="recipe.iwo"):
        _recipe(_config(dataset, tmp_path, "froster", "recipe.iwo=true"))
    (tmp_path / "short.json").write_text(json.dumps({"0": "Archery: shooting arrows."}))
    with pytest.raises(ConfigError, match="recipe.descriptions"):
        _recipe(_config(dataset, tmp_path, "froster", f"recipe.descriptions={tmp_path / 'short.json'}"))


@pytest.mark.parametrize("path", ["configs/open_vclip/k400.yaml", "configs/froster/k400.yaml",
                                  "configs/froster/b2n.yaml", "configs/froster/b2n_hmdb51.yaml",
                                  "configs/froster/b2n_ucf101.yaml", "configs/froster/b2n_ssv2.yaml"])
def test_shipped_configs_build_their_recipe(path, tmp_path):
    config = load_config(Path(__file__).resolve().parents[1] / path, [f"data.classes={tmp_path / 'c.txt'}"])
    (tmp_path / "c.txt").write_text("archery\nsurfing water\n")
    recipe = _recipe(config)
    assert recipe.opts.average_from_epoch == 2 and config.schedule.warmup_epochs == 2
    assert recipe.view_fusion == "sum_logits" and config.eval.views == "3x1"


def test_iwo_under_two_processes(dataset, tmp_path):
    """IWO's two forwards run inside one DistributedDataParallel call (gloo, CPU)."""
    import os

    from test_distributed import TORCHRUN, free_port

    if not TORCHRUN.exists():
        pytest.skip("torchrun not installed beside python")
    overrides = [f"{k}={v}" for k, v in (("recipe.name", "open_vclip"), ("model.backbone", "tiny"),
                                          ("model.pretrained", "none"), ("data.root", dataset),
                                          ("data.train_list", dataset / "train.txt"),
                                          ("data.classes", dataset / "classes.csv"), ("data.frames", 4),
                                          ("data.batch_size", 2), ("data.workers", 0), ("schedule.epochs", 1),
                                          ("schedule.warmup_epochs", 0), ("run.out_dir", tmp_path),
                                          ("run.device", "cpu"), ("recipe.average_from_epoch", 1))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                           str(free_port()), "-m", "ovar", "train", *overrides], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x.get("kind", x.get("event")) == "train" or "ce_interp" in x]
    assert train_lines and all(torch.isfinite(torch.tensor(x["ce_interp"])) for x in train_lines)
    assert (tmp_path / "model.pt").is_file()
    assert torch.load(tmp_path / "weight_average.pt", weights_only=True)["epochs"] == [1]
