"""Drawing primitives shared by the two offline scene renderers.

Everything here is PIL + numpy, deterministic, and cheap enough that a 112 px
scene (drawn at 2x and downsampled with LANCZOS for antialiasing) renders in a
few milliseconds. Coordinates are in pixels of the supersampled canvas unless a
name says otherwise.

Conventions for 3-D vectors (normals, light directions): (right, up, toward the
camera), i.e. screen x, minus screen y, out of the screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]

SUPERSAMPLE = 2  # draw at 2x, downsample with LANCZOS


# --------------------------------------------------------------------------- colours


def clamp_rgb(c: Sequence[float]) -> RGB:
    return tuple(int(min(255, max(0, round(v)))) for v in c)  # type: ignore[return-value]


def scale_rgb(c: Sequence[float], k: float) -> RGB:
    """Multiply a colour by k (k < 1 darkens)."""
    return clamp_rgb([v * k for v in c])


def mix_rgb(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    """Linear blend: t=0 gives a, t=1 gives b."""
    return clamp_rgb([x + (y - x) * t for x, y in zip(a, b, strict=True)])


def unit(v: Sequence[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def lambert(normal: Sequence[float], light: np.ndarray) -> float:
    """Diffuse term max(0, n.l) for one flat face."""
    return max(0.0, float(np.dot(unit(normal), light)))


# --------------------------------------------------------------------------- backgrounds


@lru_cache(maxsize=32)
def _ramp(h: int, w: int, top: RGB, bottom: RGB) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    a = np.asarray(top, np.float32)[None, None, :]
    b = np.asarray(bottom, np.float32)[None, None, :]
    col = a + (b - a) * t  # (h, 1, 3)
    out = np.broadcast_to(col, (h, w, 3)).astype(np.float32)
    out.setflags(write=False)
    return out


def vertical_gradient(h: int, w: int, top: RGB, bottom: RGB) -> np.ndarray:
    """(h, w, 3) float32 read-only gradient from `top` (row 0) to `bottom`."""
    return _ramp(h, w, tuple(top), tuple(bottom))


@lru_cache(maxsize=8)
def vignette(h: int, w: int, cx: float = 0.5, cy: float = 0.45) -> np.ndarray:
    """(h, w, 1) float32 in [0, 1]: 1 at (cx, cy) (fractions of the size), falling off
    smoothly towards the corners. Read-only."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((xx / w - cx) ** 2 + (yy / h - cy) ** 2) / 0.5
    out = np.clip(1.0 - d2, 0.0, 1.0)[..., None]
    out.setflags(write=False)
    return out


def to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------- shadows


def soft_shadows(
    canvas: Image.Image,
    ellipses: Sequence[tuple[float, float, float, float]],
    strength: float,
    blur: float,
) -> Image.Image:
    """Darken `canvas` under blurred ellipses (x0, y0, x1, y1); returns a new image.

    All shadows share one mask and one Gaussian blur, so the cost does not grow
    with the number of objects.
    """
    if not ellipses:
        return canvas
    mask = Image.new("L", canvas.size, 0)
    d = ImageDraw.Draw(mask)
    fill = int(round(255 * strength))
    for box in ellipses:
        d.ellipse(box, fill=fill)
    mask = mask.filter(ImageFilter.GaussianBlur(blur))
    black = Image.new("RGB", canvas.size, (0, 0, 0))
    return Image.composite(black, canvas, mask)


# --------------------------------------------------------------------------- shaded sprites


@lru_cache(maxsize=256)
def _disc_geometry(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit-sphere normals (nx, ny, nz) and an antialiased coverage mask for a disc
    of `radius` pixels, on a (2r+2, 2r+2) grid."""
    n = 2 * radius + 2
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    x = (xx - c) / radius
    y = (c - yy) / radius  # up is positive
    rr = np.sqrt(x * x + y * y)
    cover = np.clip((1.0 - rr) * radius + 0.5, 0.0, 1.0)
    z = np.sqrt(np.clip(1.0 - x * x - y * y, 0.0, 1.0))
    for a in (x, y, z, cover):
        a.setflags(write=False)
    return x, y, z, cover


def _shade(
    base: np.ndarray,
    diffuse: np.ndarray,
    spec: np.ndarray,
    ambient: float,
    spec_strength: float,
    spec_tint: np.ndarray,
) -> np.ndarray:
    rgb = base[None, None, :] * (ambient + (1.0 - ambient) * diffuse)[..., None]
    rgb = rgb + (spec_strength * spec)[..., None] * spec_tint[None, None, :]
    return rgb


def sphere_sprite(
    radius: int,
    color: RGB,
    light: np.ndarray,
    *,
    shiny: bool,
    ambient: float = 0.35,
) -> Image.Image:
    """An RGBA sprite of a Phong-shaded sphere of `radius` pixels.

    Shiny spheres get a small, sharp, near-white specular highlight and a little
    reflected-sky rim; matte ones only a broad, dim sheen.
    """
    x, y, z, cover = _disc_geometry(radius)
    ndotl = np.clip(x * light[0] + y * light[1] + z * light[2], 0.0, 1.0)
    # Blinn half vector with the viewer at +z.
    h = unit(light + np.array([0.0, 0.0, 1.0], np.float32))
    ndoth = np.clip(x * h[0] + y * h[1] + z * h[2], 0.0, 1.0)
    if shiny:
        spec = ndoth**60
        strength = 230.0
        rim = (1.0 - z) ** 3 * 0.25
    else:
        spec = ndoth**8
        strength = 28.0
        rim = np.zeros_like(z)
    base = np.asarray(color, np.float32)
    rgb = _shade(base, ndotl, spec, ambient, strength / 255.0, np.full(3, 255.0, np.float32))
    rgb = rgb + rim[..., None] * 120.0
    rgba = np.empty(x.shape + (4,), np.uint8)
    rgba[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    rgba[..., 3] = (cover * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def cylinder_sprite(
    radius: int,
    squash: float,
    body_height: int,
    color: RGB,
    light: np.ndarray,
    *,
    shiny: bool,
    ambient: float = 0.35,
) -> Image.Image:
    """RGBA sprite of an upright cylinder seen from slightly above.

    radius: half the width; squash: vertical/horizontal ratio of the end ellipses;
    body_height: pixels between the centres of the top and bottom ellipses.
    The sprite is (2r+2) wide and (2*r*squash + body_height + 2) tall.
    """
    w = 2 * radius + 2
    ry = max(1.0, radius * squash)
    h = int(np.ceil(2 * ry + body_height)) + 2
    cx = (w - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (xx - cx) / radius
    top_cy = ry + 0.5
    bot_cy = top_cy + body_height
    # Coverage of the silhouette: the band between the centre lines, plus the two caps.
    side_x = np.clip((1.0 - np.abs(x)) * radius + 0.5, 0.0, 1.0)
    e_top = np.sqrt(x**2 + ((yy - top_cy) / ry) ** 2)
    e_bot = np.sqrt(x**2 + ((yy - bot_cy) / ry) ** 2)
    in_band = ((yy >= top_cy) & (yy <= bot_cy)).astype(np.float32) * side_x
    cov_top = np.clip((1.0 - e_top) * radius + 0.5, 0.0, 1.0)
    cov_bot = np.clip((1.0 - e_bot) * radius + 0.5, 0.0, 1.0)
    cover = np.maximum(np.maximum(in_band, cov_bot), cov_top)
    # Side normals: (x, 0, sqrt(1-x^2)); top cap normal: (0, 1, 0).
    xs = np.clip(x, -1.0, 1.0)
    zs = np.sqrt(1.0 - xs * xs)
    ndotl_side = np.clip(xs * light[0] + zs * light[2], 0.0, 1.0)
    hv = unit(light + np.array([0.0, 0.0, 1.0], np.float32))
    ndoth_side = np.clip(xs * hv[0] + zs * hv[2], 0.0, 1.0)
    base = np.asarray(color, np.float32)
    if shiny:
        spec_side = ndoth_side**40
        s = 0.9
    else:
        spec_side = ndoth_side**6
        s = 0.1
    side = _shade(base, ndotl_side, spec_side, ambient, s, np.full(3, 255.0, np.float32))
    top_l = float(np.clip(light[1], 0.0, 1.0))
    top = base * (ambient + (1.0 - ambient) * top_l) * 1.05 + (25.0 if shiny else 8.0)
    top_mask = cov_top[..., None]
    rgb = side * (1.0 - top_mask) + top[None, None, :] * top_mask
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    rgba[..., 3] = (cover * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def paste_centered(canvas: Image.Image, sprite: Image.Image, cx: float, cy: float) -> None:
    """Alpha-paste `sprite` with its centre at (cx, cy)."""
    x0 = int(round(cx - sprite.width / 2.0))
    y0 = int(round(cy - sprite.height / 2.0))
    canvas.paste(sprite, (x0, y0), sprite)


# --------------------------------------------------------------------------- placement


def place_objects(
    rng: np.random.Generator,
    radii: Sequence[float],
    sample_xy: Callable[[float], tuple[float, float]],
    min_sep: float,
    y_stretch: float = 1.0,
    max_tries: int = 200,
    shrink: float = 0.92,
) -> tuple[list[tuple[float, float]], list[float]]:
    """Rejection-sample one centre per radius so that every pair satisfies
    dist >= min_sep * (r_i + r_j), where dist = hypot(dx, dy * y_stretch).

    `sample_xy(r)` draws a candidate centre for an object of radius r (it must
    keep the object inside the frame). Placement is greedy, largest first. If an
    object cannot be placed after `max_tries`, every radius is shrunk by `shrink`
    and placement restarts, so the call always returns exactly len(radii) objects.
    Returns (centres, radii) in the input order.
    """
    radii = [float(r) for r in radii]
    order = sorted(range(len(radii)), key=lambda i: -radii[i])
    for _attempt in range(60):
        centres: dict[int, tuple[float, float]] = {}
        ok = True
        for i in order:
            r = radii[i]
            for _ in range(max_tries):
                x, y = sample_xy(r)
                if all(
                    np.hypot(x - cx, (y - cy) * y_stretch) >= min_sep * (r + radii[j])
                    for j, (cx, cy) in centres.items()
                ):
                    centres[i] = (x, y)
                    break
            else:
                ok = False
                break
        if ok:
            return [centres[i] for i in range(len(radii))], radii
        radii = [r * shrink for r in radii]
    # Pathological n (far more objects than fit): place without the spacing rule.
    return [sample_xy(r) for r in radii], radii


def downsample(canvas: Image.Image, size: int) -> Image.Image:
    """Final antialiasing step: LANCZOS down to size x size, RGB."""
    if canvas.size != (size, size):
        canvas = canvas.resize((size, size), Image.Resampling.LANCZOS)
    return canvas.convert("RGB")
