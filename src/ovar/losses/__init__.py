"""Training losses shared by the recipes."""

from .symmetric_kl import same_label_targets, symmetric_kl_loss

__all__ = ["same_label_targets", "symmetric_kl_loss"]
