"""Drawing per-segment predictions of a long video as a timeline PNG."""

from __future__ import annotations

from pathlib import Path

from ..errors import OvarError
from .results import VideoPrediction


def plot_timeline(result: VideoPrediction, path: str | Path, max_labels: int = 6) -> Path:
    """Probability of the most frequent labels over time, with the top label of each window."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    segments = result.segments or []
    if not segments:
        raise OvarError(f"{result.video}: no segments to plot")
    # The labels worth drawing: every window's winner first, then the best on average.
    winners = list(dict.fromkeys(s.predictions[0].label for s in segments))
    overall = [p.label for p in result.predictions if p.label not in winners]
    labels = (winners + overall)[:max(max_labels, 1)]
    centres = [(s.start + s.end) / 2 for s in segments]

    fig, (ax, band) = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True,
                                   gridspec_kw={"height_ratios": [4, 1]})
    colours = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    for label in labels:
        scores = [next((p.score for p in s.predictions if p.label == label), 0.0) for s in segments]
        ax.plot(centres, scores, marker="o", markersize=3, label=label, color=colours[label])
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    ax.set_title(Path(result.video).name)
    for s in segments:
        top = s.predictions[0].label
        band.axvspan(s.start, s.end, color=colours.get(top, "grey"), alpha=0.8)
    band.set_yticks([])
    band.set_xlabel("time (s)")
    band.set_ylabel("top-1", rotation=0, ha="right", va="center")
    band.set_xlim(segments[0].start, segments[-1].end)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
