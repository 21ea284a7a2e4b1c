"""Score change of reduced precision against fp32 on the reference sets (all five systems).

For each set under $OVAR_SHARED_DIR/reference the converted model scores the reference
clips in fp32 and with its video encoder under bf16 autocast (and fp16 on a GPU), the way
``ovar predict --precision`` runs it; the table gives the largest absolute difference of a
class probability and the share of videos whose top-1 class is unchanged.

    python benchmarks/bench_precision.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    from precision_reference import SYSTEMS, compare
    from reference_set import ReferenceSet

    dtypes = [torch.bfloat16]
    print(f"{'system':12s}{'dtype':>10s}{'videos':>8s}{'max |dp|':>12s}{'top-1 same':>12s}")
    for system in SYSTEMS:
        if not ReferenceSet(system).available:
            print(f"{system:12s}  (no reference set)")
            continue
        for dtype in dtypes:
            r = compare(system, dtype)
            print(f"{system:12s}{str(dtype).split('.')[-1]:>10s}{r['videos']:>8d}{r['max_abs_prob_diff']:>12.2e}"
                  f"{100 * r['top1_agreement']:>11.0f}%")


if __name__ == "__main__":
    main()
