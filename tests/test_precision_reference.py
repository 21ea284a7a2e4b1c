"""bf16 against fp32 on a reference set: the stated tolerance of docs/precision.md holds."""

from __future__ import annotations

import pytest
import torch

from precision_reference import compare
from reference_set import ReferenceSet

pytestmark = ReferenceSet("open_vclip").skip_unless_available("Open-VCLIP")
TOLERANCE = 0.01  # docs/precision.md: bf16 probabilities within 0.01 of fp32, same top-1


def test_bf16_probabilities_stay_within_the_stated_tolerance():
    result = compare("open_vclip", torch.bfloat16)
    assert result["top1_agreement"] == 1.0
    assert result["max_abs_prob_diff"] <= TOLERANCE
    assert result["max_abs_prob_diff"] > 1e-6  # bf16 really ran: its rounding shows
