"""Training losses shared by the recipes."""

from .feature_distillation import cosine_distance, feature_distillation_loss
from .symmetric_kl import same_label_targets, symmetric_kl_loss

__all__ = ["cosine_distance", "feature_distillation_loss", "same_label_targets", "symmetric_kl_loss"]
