"""FROSTER's residual feature distillation: cosine distance to a frozen teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``1 - mean_i cos(student_i, teacher_i)`` over the rows of two (N, E) matrices."""
    return 1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1, eps=1e-8).mean()


def feature_distillation_loss(video_student: torch.Tensor, video_teacher: torch.Tensor,
                              text_student: torch.Tensor, text_teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(video term, text term)``: the cosine distances of per-frame video features
    (B*T, E) and of class embeddings (C, E); FROSTER adds ``ratio * (video + text)``."""
    return cosine_distance(video_student, video_teacher), cosine_distance(text_student, text_teacher)
