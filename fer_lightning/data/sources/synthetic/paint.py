"""Painting the synthetic faces: a PIL canvas drawn through the posed landmarks (head,
skin creases, brows, eyes, nose, mouth, occluders), then downsampled, lit, blurred and
noised into the final uint8 image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fer_lightning.data.sources.synthetic.geometry import Geometry, clamp

#: Faces are drawn this many times larger, then box-downsampled (anti-aliasing).
SUPERSAMPLE = 4

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Look:
    """Class-independent appearance of one sample: colours, hair, lighting, corruptions."""

    colours: dict[str, RGB]  # name -> RGB in [0, 255]
    hair_style: int  # 0 none, 1 short, 2 long
    hairline: float  # how far the hair comes down the forehead, 0..1
    brow_width: float  # brow thickness, canonical units
    gaze: tuple[float, float]  # iris offset, in [-1, 1]
    light_angle: float
    light_strength: float
    noise_sigma: float  # in grey levels
    blur_radius: float  # output pixels, 0 = no blur
    occluder: int  # 0 none, 1 sunglasses bar, 2 hand-like patch, 3 random box
    occluder_u: list[float]  # 4 uniforms placing the occluder


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """The colour between ``a`` (t = 0) and ``b`` (t = 1)."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def times(a: RGB, k: float | RGB) -> RGB:
    """Colour ``a`` scaled by ``k`` (one gain, or one per channel)."""
    kr, kg, kb = (k, k, k) if isinstance(k, float) else k
    return (a[0] * kr, a[1] * kg, a[2] * kb)


# ---------------------------------------------------------------------------------------
# Rendering (canvas pixels; every feature is drawn through its landmarks)
# ---------------------------------------------------------------------------------------

Ink = int | tuple[int, int, int]


def _path(points: list, indices: Sequence[int]) -> list:
    """Selected points as a python list (cheaper than numpy fancy indexing)."""
    return [points[i] for i in indices]


def _lerp(a: list, b: list, t: float) -> list:
    return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]


class Painter:
    """Draws onto a PIL canvas in grey ("L", the luminance of the colours) or "RGB"."""

    def __init__(self, size: int, channels: int, colours: dict[str, RGB]) -> None:
        self.grey = channels == 1
        self.colours = colours
        self.inks = {name: self.rgb(colour) for name, colour in colours.items()}
        self.image = Image.new("L" if self.grey else "RGB", (size, size), self.inks["background"])
        self.draw = ImageDraw.Draw(self.image)

    def rgb(self, colour: RGB) -> Ink:
        """The PIL fill of an RGB triple (luminance when grey)."""
        r, g, b = (clamp(c, 0.0, 255.0) for c in colour)
        return int(0.299 * r + 0.587 * g + 0.114 * b) if self.grey else (int(r), int(g), int(b))

    def ink(self, name: str) -> Ink:
        """The PIL fill of a named palette colour."""
        return self.inks[name]

    def mix(self, a: str, b: str, t: float) -> Ink:
        """Fill between named colours ``a`` (t = 0) and ``b`` (t = 1)."""
        return self.rgb(mix(self.colours[a], self.colours[b], t))

    def polygon(self, points: list, fill: Ink) -> None:
        self.draw.polygon(points, fill=fill)

    def line(self, points: list, fill: Ink, width: float) -> None:
        self.draw.line(points, fill=fill, width=max(1, round(width)))

    def disc(self, x: float, y: float, radius: float, fill: Ink) -> None:
        self.draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)


def _paint_head(p: Painter, g: Geometry, look: Look) -> None:
    """Long hair behind, neck, face, skin creases, then the hair cap over the forehead."""
    if look.hair_style == 2:
        p.polygon(g.hair_back, p.ink("hair"))
    p.polygon(g.neck, p.ink("shade"))
    p.polygon(g.face, p.ink("skin"))
    _paint_creases(p, g)
    if look.hair_style >= 1:
        p.polygon(g.hair_cap, p.ink("hair"))


def _paint_creases(p: Painter, g: Geometry) -> None:
    """Smile folds always (faint at rest); furrows, forehead and nose lines when present."""
    pts, u, c = g.points, g.unit, g.creases
    folds = g.folds
    fold_ink = p.mix("skin", "crease", 0.7 * c["fold"])
    p.line(folds[:3], fold_ink, 0.012 * u)
    p.line(folds[3:], fold_ink, 0.012 * u)
    if c["forehead"] > 0.05:
        ink = p.mix("skin", "crease", 0.6 * c["forehead"])
        lines = g.forehead_lines
        for k in range(0, len(lines), 5):
            p.line(lines[k : k + 5], ink, 0.008 * u)
    if c["furrow"] > 0.05:
        ink = p.mix("skin", "crease", 0.8 * c["furrow"])
        for side in (0.35, 0.65):
            top = _lerp(pts[21], pts[22], side)
            p.line([top, _lerp(top, pts[27], 0.8)], ink, 0.009 * u)
    if c["nose"] > 0.05:
        ink = p.mix("skin", "crease", 0.8 * c["nose"])
        # short lines across the bridge, as wide as a third of the gap between the eyes
        half_x, half_y = (pts[42][0] - pts[39][0]) * 0.18, (pts[42][1] - pts[39][1]) * 0.18
        for k in (0.7, 1.2):
            x, y = _lerp(pts[27], pts[28], k)
            p.line([[x - half_x, y - half_y], [x + half_x, y + half_y]], ink, 0.008 * u)


def _paint_brow(p: Painter, brow: list, width: float) -> None:
    """A thick line with round joints; PIL's own joint="curve" costs more than the rest
    of the face, discs at the points do the same job."""
    ink = p.ink("brow")
    p.line(brow, ink, width)
    for k, (x, y) in enumerate(brow):
        p.disc(x, y, width * (0.3 if k == 0 else 0.5), ink)  # thinner at the outer end


def _paint_eye(p: Painter, eye: list, gaze: tuple[float, float], unit: float) -> None:
    """Sclera, iris and pupil (shrunk to fit a narrowed eye), lash line, lower lid."""
    p.polygon(eye, p.ink("sclera"))
    (x0, y0), (x1, y1), (x2, y2), (x3, y3), (x4, y4), (x5, y5) = eye
    ux, uy, lx, ly = (x1 + x2) / 2.0, (y1 + y2) / 2.0, (x4 + x5) / 2.0, (y4 + y5) / 2.0
    opening = math.hypot(lx - ux, ly - uy)
    half_width = math.hypot(x3 - x0, y3 - y0) / 2.0
    cx = (ux + lx) / 2.0 + gaze[0] * half_width * 0.4
    cy = (uy + ly) / 2.0 + gaze[1] * opening * 0.2
    radius = min(0.034 * unit, 0.55 * opening)
    p.disc(cx, cy, radius, p.ink("iris"))
    p.disc(cx, cy, radius * 0.45, p.ink("pupil"))
    p.line(eye[:4], p.ink("lash"), 0.014 * unit)
    p.line(eye[3:] + eye[:1], p.mix("skin", "lash", 0.5), 0.007 * unit)


def _paint_nose(p: Painter, pts: list, unit: float) -> None:
    p.line(_path(pts, (28, 29, 31)), p.mix("skin", "crease", 0.35), 0.007 * unit)
    p.line(_path(pts, (28, 29, 35)), p.mix("skin", "crease", 0.2), 0.007 * unit)
    p.line(pts[31:36], p.mix("skin", "crease", 0.8), 0.01 * unit)
    (tip_x, tip_y), (base_x, base_y) = pts[30], pts[33]
    up_x, up_y = (tip_x - base_x) * 0.15, (tip_y - base_y) * 0.15
    for x, y in (pts[32], pts[34]):
        p.disc(x + up_x, y + up_y, 0.013 * unit, p.ink("nostril"))


def _paint_mouth(p: Painter, pts: list, unit: float) -> None:
    """Lips; when open, a dark interior with an upper row of teeth; the lip line."""
    p.polygon(pts[48:60], p.ink("lip"))
    upper, lower = pts[61:64], _path(pts, (67, 66, 65))
    pairs = list(zip(upper, lower, strict=True))
    opening = sum(math.hypot(lo[0] - up[0], lo[1] - up[1]) for up, lo in pairs) / 3.0
    if opening > 0.006 * unit:
        p.polygon(pts[60:68], p.ink("mouth"))
        depth = min(0.45, 0.02 * unit / opening)
        teeth = [_lerp(up, lo, depth) for up, lo in pairs]
        p.polygon(pts[60:65] + teeth[::-1], p.ink("teeth"))
    lip_line = p.mix("lip", "mouth", 0.7)
    p.line(pts[60:65], lip_line, 0.008 * unit)
    p.line(pts[64:68] + pts[60:61], lip_line, 0.006 * unit)


def _paint_features(p: Painter, g: Geometry, look: Look) -> None:
    pts, u = g.points, g.unit
    _paint_brow(p, pts[17:22], look.brow_width * u)
    _paint_brow(p, pts[26:21:-1], look.brow_width * u)
    _paint_eye(p, pts[36:42], look.gaze, u)
    _paint_eye(p, pts[42:48], look.gaze, u)
    _paint_nose(p, pts, u)
    _paint_mouth(p, pts, u)


def _paint_occluder(p: Painter, g: Geometry, look: Look, size: int) -> None:
    """Sunglasses bar, hand-like skin patch or random box; landmarks stay ground truth."""
    pts, u, r = g.points, g.unit, look.occluder_u
    if look.occluder == 1:
        (ax, ay), (bx, by) = pts[36], pts[45]
        dx, dy = (bx - ax) * 0.12, (by - ay) * 0.12
        norm = math.hypot(bx - ax, by - ay) + 1e-9
        half = (0.05 + 0.03 * r[0]) * u / norm
        nx, ny = -(by - ay) * half, (bx - ax) * half
        a, b = (ax - dx, ay - dy), (bx + dx, by + dy)
        bar = [(a[0] - nx, a[1] - ny), (b[0] - nx, b[1] - ny), (b[0] + nx, b[1] + ny),
               (a[0] + nx, a[1] + ny)]  # fmt: skip
        grey = 10.0 + 60.0 * r[1]
        p.polygon(bar, p.rgb((grey, grey, grey)))
    elif look.occluder == 2:
        x, y = pts[int(r[0] * 67.99)]
        radius = (0.08 + 0.08 * r[1]) * u
        box = [x - radius, y - radius * 1.3, x + radius, y + radius * 1.3]
        p.draw.ellipse(box, fill=p.rgb(times(p.colours["skin"], 0.8 + 0.4 * r[2])))
    elif look.occluder == 3:
        x, y = r[0] * size, r[1] * size
        w, h = (0.15 + 0.25 * r[2]) * size, (0.1 + 0.2 * r[3]) * size
        grey = 255.0 * r[2]
        p.draw.rectangle([x - w / 2, y - h / 2, x + w / 2, y + h / 2],
                         fill=p.rgb((grey, grey, grey)))  # fmt: skip


@lru_cache(maxsize=8)
def _ramps(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical ramps in [-1, 1] for the lighting gradient."""
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    return ramp[None, :], ramp[:, None]


def _finish(image: Image.Image, look: Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """Downsample, blur, light and add noise; returns uint8 (H, W) or (H, W, 3)."""
    small = image.reduce(SUPERSAMPLE)
    if look.blur_radius > 0:
        small = small.filter(ImageFilter.GaussianBlur(look.blur_radius))
    pixels = np.asarray(small, dtype=np.float32)
    across, down = _ramps(size)
    strength = look.light_strength
    gain = (1.0 + strength * math.cos(look.light_angle) * across) + (
        strength * math.sin(look.light_angle) * down
    )
    pixels = pixels * (gain if pixels.ndim == 2 else gain[..., None])
    if look.noise_sigma > 0:
        noise = rng.standard_normal(pixels.shape, dtype=np.float32)
        pixels += noise * np.float32(look.noise_sigma)
    pixels += 0.5  # round, not truncate
    return np.clip(pixels, 0.0, 255.0, out=pixels).astype(np.uint8)


def render_face(geometry: Geometry, look: Look, size: int, channels: int,
                rng: np.random.Generator) -> np.ndarray:
    """The ``size`` x ``size`` uint8 image of one posed face (``geometry`` drawn on a
    canvas ``SUPERSAMPLE`` times larger): grey (H, W) or colour (H, W, 3)."""
    painter = Painter(size * SUPERSAMPLE, channels, look.colours)
    _paint_head(painter, geometry, look)
    _paint_features(painter, geometry, look)
    if look.occluder:
        _paint_occluder(painter, geometry, look, size * SUPERSAMPLE)
    return _finish(painter.image, look, size, rng)
