"""Drawing for SynthActions: backgrounds, shapes, distractors and the actions as trajectories.

Everything is plain numpy on ``(H, W, 3)`` uint8 frames and every random choice comes from
a ``numpy.random.Generator`` passed in, so a clip is a pure function of its seed.

An action is a trajectory of the object's state over time ``t`` in [0, 1]: centre, size,
angle (clockwise on screen, degrees) and visibility. Every shape carries a dark spot off its
centre, so that turning is visible even for a circle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (35, 170, 55), "blue": (40, 75, 215), "yellow": (235, 205, 30),
    "purple": (150, 45, 190), "orange": (240, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES: dict[str, float] = {"small": 0.11, "medium": 0.15, "large": 0.19}  # radius / frame side
ACTIONS = ("moving left", "moving right", "moving up", "moving down", "rotating clockwise",
           "rotating anticlockwise", "growing", "shrinking", "bouncing", "blinking", "staying still")

_TRAVEL = 0.40  # distance covered by a move, as a fraction of the frame side
_TURN = 100.0  # degrees turned by a rotation over the clip
_GROW = 1.8  # size ratio between the ends of growing / shrinking


@dataclass(frozen=True)
class ObjectState:
    """Where and how the object is drawn in one frame (pixels, degrees)."""

    x: float
    y: float
    radius: float
    angle: float
    visible: bool = True


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted two-colour gradient with blotchy texture (no saturated colour to confuse the object's)."""
    grey = rng.uniform(70, 190)
    a = np.clip(grey + rng.normal(0, 18, 3), 30, 225)
    b = np.clip(grey + rng.uniform(-50, 50) + rng.normal(0, 18, 3), 30, 225)
    theta = rng.uniform(0, 2 * np.pi)
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    ramp = np.cos(theta) * axis[None, :] + np.sin(theta) * axis[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    img = a[None, None, :] + (b - a)[None, None, :] * ramp[..., None]
    # Coarse noise, upsampled: texture that is not the object's shape or colour.
    cells = max(size // 8, 2)
    step = -(-size // cells)
    noise = rng.normal(0, 9, (cells, cells, 1)).repeat(step, 0).repeat(step, 1)[:size, :size]
    return np.clip(img + noise, 0, 255).astype(np.float32)


def shape_mask(shape: str, state: ObjectState, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(body, spot)`` of ``shape`` drawn at ``state``, over pixel rows ``ys``
    and columns ``xs``. Every shape fits in a circle of ``state.radius``."""
    yy, xx = np.meshgrid(ys.astype(np.float32), xs.astype(np.float32), indexing="ij")
    rad = np.deg2rad(state.angle)
    dx, dy = xx - state.x, yy - state.y
    # Object coordinates: rotate the pixel offsets back by the clockwise angle.
    u = np.cos(rad) * dx + np.sin(rad) * dy
    v = -np.sin(rad) * dx + np.cos(rad) * dy
    r = state.radius
    if shape == "circle":
        body = u * u + v * v <= r * r
    elif shape == "square":
        body = (np.abs(u) <= 0.7 * r) & (np.abs(v) <= 0.7 * r)
    elif shape == "diamond":
        body = np.abs(u) / (0.75 * r) + np.abs(v) / r <= 1.0
    elif shape == "triangle":  # apex up in object coordinates
        body = (v <= 0.6 * r) & (v >= -r + 2.0 * np.abs(u))
    else:
        raise ValueError(f"unknown shape '{shape}'")
    spot = (u * u + (v + 0.45 * r) ** 2) <= (0.24 * r) ** 2
    return body, spot & body


def draw(img: np.ndarray, shape: str, state: ObjectState, colour: np.ndarray,
         spot_colour: np.ndarray | None = None) -> None:
    """Paint ``shape`` (and its dark spot, if ``spot_colour``) into ``img`` in place."""
    size_y, size_x = img.shape[:2]
    r = state.radius + 1
    y0, y1 = max(int(state.y - r), 0), min(int(state.y + r) + 2, size_y)
    x0, x1 = max(int(state.x - r), 0), min(int(state.x + r) + 2, size_x)
    if y0 >= y1 or x0 >= x1:
        return
    body, spot = shape_mask(shape, state, np.arange(y0, y1), np.arange(x0, x1))
    box = img[y0:y1, x0:x1]
    box[body] = colour
    if spot_colour is not None:
        box[spot] = spot_colour


def trajectory(action: str, t: np.ndarray, rng: np.random.Generator, size: int, radius: float) -> list[ObjectState]:
    """The object's state at times ``t`` (in [0, 1]) for ``action``, starting at a random place
    chosen so that the whole motion stays inside the frame."""
    travel = _TRAVEL * size
    big = radius * (_GROW ** 0.5 if action in ("growing", "shrinking") else 1.0)
    lo, hi = big + 1, size - big - 1

    def place(span_x: float = 0.0, span_y: float = 0.0) -> tuple[float, float]:
        return rng.uniform(lo + span_x, max(hi - span_x, lo + span_x)), rng.uniform(lo + span_y, max(hi - span_y, lo + span_y))

    angle0 = rng.uniform(0, 360)
    states = []
    if action.startswith("moving"):
        sx, sy = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}[action]
        cx, cy = place(travel / 2 * abs(sx), travel / 2 * abs(sy))
        for ti in t:
            off = (ti - 0.5) * travel
            states.append(ObjectState(cx + sx * off, cy + sy * off, radius, angle0))
    elif action.startswith("rotating"):
        sign = 1.0 if action == "rotating clockwise" else -1.0
        cx, cy = place()
        states = [ObjectState(cx, cy, radius, angle0 + sign * _TURN * ti) for ti in t]
    elif action in ("growing", "shrinking"):
        cx, cy = place()
        lo_r, hi_r = radius / _GROW ** 0.5, radius * _GROW ** 0.5
        for ti in t:
            f = ti if action == "growing" else 1 - ti
            states.append(ObjectState(cx, cy, lo_r + (hi_r - lo_r) * f, angle0))
    elif action == "bouncing":
        height = 0.3 * size
        cx, cy = place(0, height / 2)
        base_y = cy + height / 2
        bounces = rng.choice([1.5, 2.0])
        phase = rng.uniform(0, 0.25)
        for ti in t:
            states.append(ObjectState(cx, base_y - height * abs(np.sin(np.pi * (bounces * ti + phase))), radius, angle0))
    elif action == "blinking":
        cx, cy = place()
        period = int(rng.integers(2, 4))  # frames on, then as many off
        start = int(rng.integers(0, period))
        states = [ObjectState(cx, cy, radius, angle0, ((i + start) // period) % 2 == 0) for i in range(len(t))]
    elif action == "staying still":
        cx, cy = place()
        states = [ObjectState(cx, cy, radius, angle0) for _ in t]
    else:
        raise ValueError(f"unknown action '{action}'")
    return states


@dataclass(frozen=True)
class Distractor:
    """A small neutral-toned shape drifting slowly: clutter that names nothing."""

    shape: str
    tone: np.ndarray
    start: tuple[float, float]
    drift: tuple[float, float]
    radius: float
    angle: float


def distractors(rng: np.random.Generator, size: int, count: int) -> list[Distractor]:
    out = []
    for _ in range(count):
        tone = np.full(3, rng.choice([rng.uniform(15, 55), rng.uniform(200, 245)])) + rng.normal(0, 6, 3)
        out.append(Distractor(str(rng.choice(SHAPES)), np.clip(tone, 0, 255), (rng.uniform(0, size), rng.uniform(0, size)),
                              (rng.uniform(-0.08, 0.08) * size, rng.uniform(-0.08, 0.08) * size),
                              rng.uniform(0.04, 0.07) * size, rng.uniform(0, 360)))
    return out


def render(size: int, bg: np.ndarray, clutter: list[Distractor], shape: str, colour: np.ndarray,
           states: list[ObjectState], t: np.ndarray) -> np.ndarray:
    """``(T, size, size, 3)`` uint8 frames: background, distractors, then the object on top."""
    frames = np.empty((len(states), size, size, 3), np.uint8)
    spot_colour = np.array([25.0, 25.0, 25.0])
    for i, (state, ti) in enumerate(zip(states, t)):
        img = bg.copy()
        for d in clutter:
            pos = ObjectState(d.start[0] + d.drift[0] * ti, d.start[1] + d.drift[1] * ti, d.radius, d.angle)
            draw(img, d.shape, pos, d.tone)
        if state.visible:
            draw(img, shape, state, colour, spot_colour)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def object_colour(rng: np.random.Generator, name: str) -> np.ndarray:
    """The named colour with a little per-clip jitter."""
    return np.clip(np.array(COLOURS[name], np.float32) + rng.normal(0, 8, 3), 0, 255)

