"""Interpolated weight optimisation (Open-VCLIP): the loss also evaluated at weights
moved towards the original CLIP, without touching the model's own parameters.

At interpolated weights ``θ' = α·θ0 + (1 − α)·θ`` the gradient the original adds to the
step is ``∂L/∂θ'`` itself — it omits the chain-rule factor ``(1 − α)``. Writing
``θ' = θ + α·(θ0 − θ).detach()`` gives that value with exactly that gradient, so one
ordinary backward of ``L(θ) + λ·L(θ')`` produces the original's update. With
``chain_rule=True`` the true gradient ``(1 − α)·∂L/∂θ'`` is used instead.

The interpolated forward is a functional call (:func:`torch.func.functional_call`) with
the interpolated tensors, so it works in one process or under DDP, and parameters that
are not interpolated (adapters, projectors, heads) take part unchanged.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def anchor_weights(module: nn.Module, prefix: str = "", *, trainable_only: bool = True) -> dict[str, torch.Tensor]:
    """Detached copies of ``module``'s parameters whose names start with ``prefix``:
    the fixed point ``θ0`` the interpolation pulls towards (taken before training)."""
    return {name: param.detach().clone() for name, param in module.named_parameters()
            if name.startswith(prefix) and (param.requires_grad or not trainable_only)}


def interpolated_parameters(module: nn.Module, anchor: Mapping[str, torch.Tensor], alpha: float, *,
                            chain_rule: bool = False) -> dict[str, torch.Tensor]:
    """``{name: α·anchor + (1 − α)·param}`` for every parameter of ``module`` named in
    ``anchor``, differentiable with respect to the parameters (see the module docstring)."""
    params = dict(module.named_parameters())
    out = {}
    for name, target in anchor.items():
        param = params.get(name)
        if param is None:
            raise KeyError(f"no parameter '{name}' to interpolate")
        target = target.to(device=param.device, dtype=param.dtype)
        if chain_rule:
            out[name] = alpha * target + (1.0 - alpha) * param
        else:
            out[name] = param + (alpha * (target - param)).detach()
    return out


def functional_forward(module: nn.Module, parameters: Mapping[str, torch.Tensor], *args, **kwargs):
    """``module(*args, **kwargs)`` with ``parameters`` substituted for its own (the rest unchanged).

    Names are those of ``named_parameters()``, which lists a module reachable under two
    names (a model's ``backbone`` and its encoder's) once; substituting it once changes it
    everywhere. ``tie_weights=False``: torch's tying would substitute it twice and then
    fail to restore the original parameter.
    """
    return torch.func.functional_call(module, dict(parameters), args, kwargs, tie_weights=False, strict=False)


def sample_alpha(low: float, high: float) -> float:
    """α ~ U(low, high) from torch's global generator, which the engine seeds per step and
    rank: draws are reproducible, and differ between ranks as in the original."""
    return float(torch.empty((), dtype=torch.float64).uniform_(low, high))
