"""CLEVR-mini: an offline, CLEVR-like scene renderer.

Cubes, spheres and cylinders in CLEVR's eight colours, matte ("rubber") or
shiny ("metal"), on a seamless grey floor under a key light from the upper
left, with soft drop shadows falling to the lower right.

Objects stand one per cell of a GRID x GRID layout, jittered inside their cell
(centre distances stay >= 0.8 x the sum of radii, so every object is clearly
visible and the count is well defined). At 112 px a cell is 28 px, exactly one
visual token of Qwen2-VL (14 px patches merged 2x2): the 0.9M-parameter mini
model then counts objects reliably, as the real model does on CLEVR. With free
placement, objects straddling tokens capped its counting at about 75% for 3-5
objects, far from the blog's base (about 95% right when it gives a number).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from stages.scenes import draw as D

# CLEVR's own palette (properties.json of the CLEVR generator).
CLEVR_COLORS: dict[str, D.RGB] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
CLEVR_SHAPES = ("cube", "sphere", "cylinder")
CLEVR_MATERIALS = ("rubber", "metal")
# Output-pixel radii of the two CLEVR sizes at 112 px, before the perspective factor (a cell is 28 px).
SIZE_RADIUS = {"small": (7.0, 8.5), "large": (10.0, 12.0)}
GRID = 4  # cells per side

LIGHT = D.unit((-0.55, 0.65, 0.55))  # upper left, in front
MIN_SEP = 0.8  # centre distance >= MIN_SEP * (r_i + r_j)
TILT = 0.5  # vertical squash of ground-plane shapes (camera looks down ~30 degrees)


def _floor(w: int, rng: np.random.Generator) -> np.ndarray:
    """A CLEVR floor: neutral grey, lighter in the middle distance, with a small
    per-scene brightness jitter."""
    base = D.vertical_gradient(w, w, (118, 118, 120), (146, 146, 146))
    glow = D.vignette(w, w, 0.45, 0.35)
    k = rng.uniform(-8.0, 8.0)
    return base + glow * 22.0 + k


def _draw_cube(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, color: D.RGB, shiny: bool, theta: float) -> None:
    """A cube whose projected extent fits a circle of radius r around (cx, cy)."""
    half_diag = 0.95 * r
    height = 1.14 * r  # 2 * edge/2 * 0.85: vertical faces foreshortened by the tilt
    # Ground-contact square, centred so that the whole cube is centred on (cx, cy).
    gy = cy + height / 2.0
    corners = []
    for k in range(4):
        a = theta + k * math.pi / 2.0
        corners.append((cx + half_diag * math.cos(a), gy + half_diag * math.sin(a) * TILT))
    top = [(x, y - height) for x, y in corners]
    hv = D.unit(LIGHT + np.array([0.0, 0.0, 1.0], np.float32))
    amb = 0.35

    def face_color(normal: tuple[float, float, float]) -> D.RGB:
        diff = D.lambert(normal, LIGHT)
        c = np.asarray(color, np.float32) * (amb + (1 - amb) * diff)
        if shiny:
            spec = max(0.0, float(np.dot(D.unit(normal), hv))) ** 12
            c = c + 200.0 * spec
        return D.clamp_rgb(c)

    for k in range(4):
        a = theta + k * math.pi / 2.0 + math.pi / 4.0  # outward normal of side k
        toward = math.sin(a)  # + means towards the camera (down the screen)
        if toward <= 0.0:
            continue
        poly = [corners[k], corners[(k + 1) % 4], top[(k + 1) % 4], top[k]]
        d.polygon(poly, fill=face_color((math.cos(a), 0.0, toward)))
    top_fill = face_color((0.0, 1.0, 0.35))
    d.polygon(top, fill=top_fill)
    if shiny:
        # A crisp reflection along the lit edges of the top face.
        hi = D.mix_rgb(top_fill, (255, 255, 255), 0.55)
        w = max(1, int(round(r * 0.08)))
        ordered = sorted(range(4), key=lambda i: top[i][0] + top[i][1])  # upper-left corner first
        k0 = ordered[0]
        for nb in ((k0 + 1) % 4, (k0 + 3) % 4):
            d.line([top[k0], top[nb]], fill=hi, width=w)


def render_clevr_scene(rng: np.random.Generator, n_objects: int, size: int = 112) -> tuple[Image.Image, list[dict]]:
    """Render one CLEVR-like scene with exactly `n_objects` objects.

    Returns (RGB image of size x size, objects). Each object is a dict with
    shape, color, material, size ("small"/"large"), x, y (centre, output pixels),
    radius (output pixels) and depth_rank (0 = drawn first, i.e. farthest).
    Deterministic for the state of `rng`.
    """
    if n_objects < 0:
        raise ValueError(f"n_objects must be >= 0, got {n_objects}")
    s = D.SUPERSAMPLE
    w = size * s
    scale = size / 112.0

    shapes = rng.integers(0, len(CLEVR_SHAPES), n_objects)
    colors = rng.integers(0, len(CLEVR_COLORS), n_objects)
    materials = rng.integers(0, 2, n_objects)
    sizes = rng.integers(0, 2, n_objects)
    size_names = ["small" if z == 0 else "large" for z in sizes]
    radii = [rng.uniform(*SIZE_RADIUS[z]) * scale for z in size_names]
    thetas = rng.uniform(0.0, math.pi / 2.0, n_objects)

    if n_objects > GRID * GRID:
        raise ValueError(f"n_objects must be <= {GRID * GRID} (one per grid cell), got {n_objects}")
    cell = size / GRID
    cells = rng.choice(GRID * GRID, n_objects, replace=False)
    centres = []
    for c, r in zip(cells, radii, strict=True):
        slack = max(0.0, cell / 2 - r - 1.0)  # jitter that keeps the object inside its cell
        row, col = divmod(int(c), GRID)
        centres.append((float((col + 0.5) * cell + rng.uniform(-slack, slack)),
                        float((row + 0.5) * cell + rng.uniform(-slack, slack))))
    # Perspective: objects farther back (smaller y) shrink to 80%. Shrinking keeps
    # the spacing rule and the in-frame rule satisfied.
    radii = [r * (0.8 + 0.2 * min(1.0, max(0.0, y / size))) for r, (_, y) in zip(radii, centres, strict=True)]

    canvas = D.to_image(_floor(w, rng))
    shadows = []
    for (x, y), r in zip(centres, radii, strict=True):
        X, Y, R = x * s, y * s, r * s
        shadows.append((X - 0.6 * R, Y + 0.3 * R, X + 1.6 * R, Y + 1.2 * R))
    canvas = D.soft_shadows(canvas, shadows, strength=0.45, blur=2.5 * s * scale)

    d = ImageDraw.Draw(canvas)
    order = sorted(range(n_objects), key=lambda i: (centres[i][1] + radii[i], i))
    objects: list[dict] = [{} for _ in range(n_objects)]
    color_names = list(CLEVR_COLORS)
    for rank, i in enumerate(order):
        x, y = centres[i]
        r = radii[i]
        X, Y, R = x * s, y * s, r * s
        shape = CLEVR_SHAPES[shapes[i]]
        cname = color_names[colors[i]]
        color = CLEVR_COLORS[cname]
        shiny = bool(materials[i])
        if shape == "sphere":
            D.paste_centered(canvas, D.sphere_sprite(int(round(R)), color, LIGHT, shiny=shiny), X, Y)
        elif shape == "cylinder":
            rc = int(round(0.8 * R))
            squash = TILT * 0.9
            body = int(round(2 * R - 2 * rc * squash))
            sprite = D.cylinder_sprite(rc, squash, body, color, LIGHT, shiny=shiny)
            D.paste_centered(canvas, sprite, X, Y)
        else:
            _draw_cube(d, X, Y, R, color, shiny, float(thetas[i]))
        objects[i] = {
            "shape": shape,
            "color": cname,
            "material": CLEVR_MATERIALS[materials[i]],
            "size": size_names[i],
            "x": round(x, 2),
            "y": round(y, 2),
            "radius": round(r, 2),
            "depth_rank": rank,
        }
    return D.downsample(canvas, size), objects
