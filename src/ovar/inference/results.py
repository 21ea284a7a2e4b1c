"""Result types of :func:`ovar.predict`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score}


@dataclass
class SegmentPrediction:
    """Ranked labels for the time window [start, end) seconds of a video."""

    start: float
    end: float
    predictions: list[LabelScore]

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3),
                "predictions": [p.to_dict() for p in self.predictions]}


@dataclass
class VideoPrediction:
    """Ranked labels of one video, best first; scores are probabilities over all labels.

    With ``segments`` the video-level ``predictions`` average the windows' probabilities.
    A video that could not be read has an empty ranking and ``error`` set; one that was
    scored but is damaged (e.g. truncated: fewer frames than declared) has ``warning`` set.
    """

    video: str
    predictions: list[LabelScore] = field(default_factory=list)
    segments: list[SegmentPrediction] | None = None
    error: str | None = None
    warning: str | None = None

    @property
    def top(self) -> LabelScore | None:
        return self.predictions[0] if self.predictions else None

    def to_dict(self) -> dict:
        out: dict = {"video": self.video, "predictions": [p.to_dict() for p in self.predictions]}
        if self.segments is not None:
            out["segments"] = [s.to_dict() for s in self.segments]
        if self.error is not None:
            out["error"] = self.error
        if self.warning is not None:
            out["warning"] = self.warning
        return out


def rank(labels: list[str], probabilities: list[float], top_k: int | None) -> list[LabelScore]:
    """Labels sorted by probability (ties keep label order), cut to ``top_k``."""
    order = sorted(range(len(labels)), key=lambda i: -probabilities[i])
    if top_k is not None:
        order = order[:top_k]
    return [LabelScore(labels[i], float(probabilities[i])) for i in order]
