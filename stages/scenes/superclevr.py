"""SuperCLEVR-mini: a second, visually distinct domain for cross-domain evaluation.

Where CLEVR-mini has primitive solids on a grey floor, this domain has vehicles
built from parts (cars, buses, motorbikes, bicycles, aeroplanes) seen from the
side, in a saturated / metallic palette that shares no colour with CLEVR's,
standing on a coloured, speckled ground under a sky with a horizon. The sun is
on the right (CLEVR's key light is on the left), so shadows fall to the left.
Objects are packed more tightly than in CLEVR-mini (more occlusion), but the
spacing rule still keeps most of every object visible.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from stages.scenes import draw as D

SUPERCLEVR_COLORS: dict[str, D.RGB] = {
    "orange": (255, 120, 10),
    "magenta": (215, 20, 150),
    "lime": (140, 215, 20),
    "teal": (0, 130, 125),
    "navy": (25, 35, 120),
    "silver": (185, 190, 200),
    "crimson": (190, 10, 45),
    "gold": (205, 160, 35),
}
SUPERCLEVR_SHAPES = ("car", "bus", "motorbike", "bicycle", "aeroplane")
SUPERCLEVR_MATERIALS = ("rubber", "metal")

# (sky top, sky at horizon, ground far, ground near)
GROUNDS = {
    "grass": ((70, 130, 210), (190, 215, 235), (95, 135, 60), (60, 110, 40)),
    "sand": ((60, 120, 205), (200, 220, 240), (205, 180, 125), (180, 150, 95)),
    "clay": ((80, 110, 190), (230, 200, 170), (175, 95, 60), (140, 70, 45)),
    "moss": ((40, 90, 160), (160, 200, 225), (70, 110, 95), (45, 80, 70)),
}

SUN = D.unit((0.6, 0.7, 0.4))  # upper right, in front
MIN_SEP = 0.62  # tighter than CLEVR-mini's 0.8: more occlusion
Y_STRETCH = 1.6  # vehicles are wide and low: vertical gaps count for more
SPECKLES = (220, 360)  # number of ground speckles (distractor texture), at output resolution

TIRE = (28, 28, 32)
HUB = (170, 170, 178)
GLASS = (120, 175, 215)


def _background(w: int, horizon: int, ground: str, rng: np.random.Generator) -> np.ndarray:
    sky_top, sky_hor, g_far, g_near = GROUNDS[ground]
    arr = np.empty((w, w, 3), np.float32)
    arr[:horizon] = D.vertical_gradient(horizon, w, sky_top, sky_hor)
    arr[horizon:] = D.vertical_gradient(w - horizon, w, g_far, g_near)
    arr[horizon:] += rng.uniform(-10.0, 10.0, 3).astype(np.float32)  # per-scene tint
    # Ground speckles: 2x2 supersampled dots lighter or darker than the ground.
    n = int(rng.integers(*SPECKLES) * (w / 224.0) ** 2)
    ys = rng.integers(horizon + 2, w - 1, n)
    xs = rng.integers(0, w - 1, n)
    shade = rng.choice(np.array([-45.0, -30.0, 30.0, 45.0], np.float32), n)[:, None]
    for dy in (0, 1):
        for dx in (0, 1):
            arr[ys + dy, xs + dx] += shade
    # A darker band right at the horizon line (distant tree line / haze edge).
    arr[horizon : horizon + max(1, w // 90)] *= 0.8
    return arr


def _metal_bands(
    d: ImageDraw.ImageDraw, box: tuple[float, float, float, float], color: D.RGB, metal: bool, radius: float
) -> None:
    """A body panel lit from above: dark base, mid band, highlight streak."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    lo = D.scale_rgb(color, 0.55 if metal else 0.75)
    d.rounded_rectangle(box, radius=radius, fill=lo)
    d.rounded_rectangle((x0, y0, x1, y1 - 0.35 * h), radius=radius, fill=color)
    if metal:
        hi = D.mix_rgb(color, (255, 255, 255), 0.6)
        d.rounded_rectangle(
            (x0 + 0.12 * (x1 - x0), y0 + 0.12 * h, x1 - 0.12 * (x1 - x0), y0 + 0.26 * h),
            radius=0.07 * h,
            fill=hi,
        )


def _wheel(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, spokes: bool = False) -> None:
    if spokes:
        t = max(2.0, 0.22 * r)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=TIRE, width=int(round(t)))
        d.line([(cx - r * 0.8, cy), (cx + r * 0.8, cy)], fill=HUB, width=max(1, int(t / 2)))
        d.line([(cx, cy - r * 0.8), (cx, cy + r * 0.8)], fill=HUB, width=max(1, int(t / 2)))
    else:
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=TIRE)
        k = 0.45 * r
        d.ellipse((cx - k, cy - k, cx + k, cy + k), fill=HUB)


def _car(d, X, Y, R, color, metal, f):
    # Body spans 2R horizontally; the whole car is about 1.05R tall.
    ground = Y + 0.52 * R
    wr = 0.3 * R
    body = (X - R, ground - wr - 0.42 * R, X + R, ground - 0.4 * wr)
    cab_y0 = body[1] - 0.4 * R
    cab = [
        (X - 0.55 * R * f - 0.0, body[1] + 1),
        (X - 0.35 * R * f, cab_y0),
        (X + 0.35 * R * f, cab_y0),
        (X + 0.65 * R * f, body[1] + 1),
    ]
    d.polygon(cab, fill=D.scale_rgb(color, 0.85))
    inner = [
        (X - 0.42 * R * f, body[1] + 1),
        (X - 0.28 * R * f, cab_y0 + 0.1 * R),
        (X + 0.3 * R * f, cab_y0 + 0.1 * R),
        (X + 0.5 * R * f, body[1] + 1),
    ]
    d.polygon(inner, fill=GLASS)
    _metal_bands(d, body, color, metal, radius=0.15 * R)
    for wx in (X - 0.58 * R, X + 0.58 * R):
        _wheel(d, wx, ground - wr, wr)


def _bus(d, X, Y, R, color, metal, f):
    ground = Y + 0.6 * R
    wr = 0.26 * R
    body = (X - R, ground - wr - 0.95 * R, X + R, ground - 0.3 * wr)
    _metal_bands(d, body, color, metal, radius=0.12 * R)
    # A row of windows along the upper half.
    n_win = 4
    wy0, wy1 = body[1] + 0.16 * R, body[1] + 0.45 * R
    span = 1.7 * R
    step = span / n_win
    for k in range(n_win):
        x0 = X - 0.85 * R + k * step + 0.08 * step
        d.rectangle((x0, wy0, x0 + step * 0.78, wy1), fill=GLASS)
    front = X + 0.9 * R * f
    d.rectangle((min(front, front - 0.12 * R * f), wy0, max(front, front - 0.12 * R * f), wy1 + 0.2 * R), fill=GLASS)
    for wx in (X - 0.62 * R, X + 0.62 * R):
        _wheel(d, wx, ground - wr, wr)


def _motorbike(d, X, Y, R, color, metal, f):
    ground = Y + 0.55 * R
    wr = 0.36 * R
    back, front = X - 0.6 * R * f, X + 0.6 * R * f
    _wheel(d, back, ground - wr, wr)
    _wheel(d, front, ground - wr, wr)
    ty = ground - wr
    tank = [
        (back + 0.1 * R * f, ty - 0.15 * R),
        (X - 0.25 * R * f, ty - 0.55 * R),
        (X + 0.35 * R * f, ty - 0.6 * R),
        (front - 0.05 * R * f, ty - 0.2 * R),
        (X + 0.1 * R * f, ty + 0.05 * R),
    ]
    d.polygon(tank, fill=color)
    if metal:
        d.line([tank[1], tank[2]], fill=D.mix_rgb(color, (255, 255, 255), 0.6), width=max(1, int(0.1 * R)))
    # Seat and handlebar.
    d.line(
        [(X - 0.5 * R * f, ty - 0.55 * R), (X - 0.05 * R * f, ty - 0.62 * R)], fill=TIRE, width=max(2, int(0.14 * R))
    )
    d.line(
        [(front - 0.1 * R * f, ty - 0.1 * R), (front - 0.2 * R * f, ty - 0.8 * R)],
        fill=HUB,
        width=max(1, int(0.08 * R)),
    )
    d.line(
        [(front - 0.2 * R * f, ty - 0.8 * R), (front - 0.4 * R * f, ty - 0.85 * R)],
        fill=TIRE,
        width=max(2, int(0.1 * R)),
    )


def _bicycle(d, X, Y, R, color, metal, f):
    ground = Y + 0.5 * R
    wr = 0.42 * R
    back, front = X - 0.55 * R * f, X + 0.55 * R * f
    hub_y = ground - wr
    _wheel(d, back, hub_y, wr, spokes=True)
    _wheel(d, front, hub_y, wr, spokes=True)
    t = max(2, int(round(0.13 * R)))
    crank = (X - 0.05 * R * f, hub_y)
    seat = (X - 0.2 * R * f, hub_y - 0.6 * R)
    head = (front - 0.15 * R * f, hub_y - 0.6 * R)
    fc = D.mix_rgb(color, (255, 255, 255), 0.25) if metal else color
    for a, b in (
        ((back, hub_y), crank),
        (crank, seat),
        (seat, head),
        (head, crank),
        (seat, (back, hub_y)),
        (head, (front, hub_y)),
    ):
        d.line([a, b], fill=fc, width=t)
    d.line(
        [(seat[0] - 0.15 * R * f, seat[1] - 0.05 * R), (seat[0] + 0.12 * R * f, seat[1] - 0.05 * R)], fill=TIRE, width=t
    )
    d.line(
        [head, (head[0] + 0.05 * R * f, head[1] - 0.2 * R), (head[0] - 0.15 * R * f, head[1] - 0.22 * R)],
        fill=TIRE,
        width=t,
    )


def _aeroplane(d, X, Y, R, color, metal, f):
    # Fuselage along x, nose towards f; the far wing behind, the near wing in front.
    fy = Y + 0.05 * R
    wing_far = [
        (X - 0.05 * R * f, fy - 0.1 * R),
        (X - 0.35 * R * f, fy - 0.55 * R),
        (X - 0.15 * R * f, fy - 0.55 * R),
        (X + 0.2 * R * f, fy - 0.1 * R),
    ]
    d.polygon(wing_far, fill=D.scale_rgb(color, 0.6))
    body = (X - R, fy - 0.2 * R, X + R, fy + 0.2 * R)
    _metal_bands(d, body, color, metal, radius=0.2 * R)
    nose_x = X + R * f
    d.ellipse((nose_x - 0.12 * R, fy - 0.08 * R, nose_x + 0.12 * R, fy + 0.08 * R), fill=D.scale_rgb(color, 0.7))
    tail_x = X - 0.9 * R * f
    fin = [
        (tail_x, fy - 0.15 * R),
        (tail_x - 0.1 * R * f, fy - 0.65 * R),
        (tail_x + 0.15 * R * f, fy - 0.65 * R),
        (tail_x + 0.35 * R * f, fy - 0.15 * R),
    ]
    d.polygon(fin, fill=D.scale_rgb(color, 0.85))
    wing_near = [
        (X - 0.1 * R * f, fy + 0.05 * R),
        (X - 0.45 * R * f, fy + 0.6 * R),
        (X - 0.2 * R * f, fy + 0.6 * R),
        (X + 0.25 * R * f, fy + 0.05 * R),
    ]
    d.polygon(wing_near, fill=D.scale_rgb(color, 0.9) if not metal else D.mix_rgb(color, (255, 255, 255), 0.3))
    # Cockpit window.
    cx = X + 0.55 * R * f
    d.ellipse((cx - 0.18 * R, fy - 0.2 * R, cx + 0.18 * R, fy - 0.02 * R), fill=GLASS)


_DRAW = {"car": _car, "bus": _bus, "motorbike": _motorbike, "bicycle": _bicycle, "aeroplane": _aeroplane}
# Half-height of each vehicle relative to its half-width R (for framing and spacing).
_HALF_HEIGHT = {"car": 0.55, "bus": 0.65, "motorbike": 0.6, "bicycle": 0.55, "aeroplane": 0.62}


def render_superclevr_scene(
    rng: np.random.Generator, n_objects: int, size: int = 112
) -> tuple[Image.Image, list[dict]]:
    """Render one SuperCLEVR-like scene with exactly `n_objects` vehicles.

    Returns (RGB image of size x size, objects). Each object is a dict with
    shape, color, material ("rubber"/"metal"), size (half-width in output
    pixels), x, y (centre, output pixels), facing (+1 right, -1 left) and
    depth_rank (0 = drawn first). Deterministic for the state of `rng`.
    """
    if n_objects < 0:
        raise ValueError(f"n_objects must be >= 0, got {n_objects}")
    s = D.SUPERSAMPLE
    w = size * s
    scale = size / 112.0

    horizon_frac = float(rng.uniform(0.22, 0.34))
    ground_name = list(GROUNDS)[int(rng.integers(len(GROUNDS)))]
    shapes = rng.integers(0, len(SUPERCLEVR_SHAPES), n_objects)
    colors = rng.integers(0, len(SUPERCLEVR_COLORS), n_objects)
    materials = rng.integers(0, 2, n_objects)
    facings = rng.choice(np.array([-1, 1]), n_objects)
    radii = list(rng.uniform(11.0, 15.0, n_objects) * scale)

    horizon = horizon_frac * size

    def sample_xy(r: float) -> tuple[float, float]:
        # Vehicles stand on the ground: their centre is below the horizon line.
        return (
            float(rng.uniform(r + 1.0, size - r - 1.0)),
            float(rng.uniform(horizon + 0.2 * r, size - 0.7 * r - 1.0)),
        )

    centres, radii = D.place_objects(rng, radii, sample_xy, MIN_SEP, y_stretch=Y_STRETCH)
    # Perspective: near the horizon things are smaller (down to 70%).
    depth = [(y - horizon) / max(1.0, size - horizon) for _, y in centres]
    radii = [r * (0.7 + 0.3 * min(1.0, max(0.0, t))) for r, t in zip(radii, depth, strict=True)]

    horizon_px = int(round(horizon * s))
    canvas = D.to_image(_background(w, horizon_px, ground_name, rng))
    shadows = []
    for i, ((x, y), r) in enumerate(zip(centres, radii, strict=True)):
        X, Y, R = x * s, y * s, r * s
        bottom = Y + _HALF_HEIGHT[SUPERCLEVR_SHAPES[shapes[i]]] * R
        shadows.append((X - 1.55 * R, bottom - 0.22 * R, X + 0.7 * R, bottom + 0.16 * R))
    canvas = D.soft_shadows(canvas, shadows, strength=0.55, blur=1.6 * s * scale)

    d = ImageDraw.Draw(canvas)
    order = sorted(range(n_objects), key=lambda i: (centres[i][1], i))
    objects: list[dict] = [{} for _ in range(n_objects)]
    color_names = list(SUPERCLEVR_COLORS)
    for rank, i in enumerate(order):
        x, y = centres[i]
        r = radii[i]
        shape = SUPERCLEVR_SHAPES[shapes[i]]
        cname = color_names[colors[i]]
        metal = bool(materials[i])
        f = int(facings[i])
        _DRAW[shape](d, x * s, y * s, r * s, SUPERCLEVR_COLORS[cname], metal, f)
        objects[i] = {
            "shape": shape,
            "color": cname,
            "material": SUPERCLEVR_MATERIALS[materials[i]],
            "size": round(r, 2),
            "x": round(x, 2),
            "y": round(y, 2),
            "facing": f,
            "depth_rank": rank,
        }
    return D.downsample(canvas, size), objects
