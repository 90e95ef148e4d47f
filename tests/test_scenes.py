"""The offline renderer: deterministic, exact counts, countable layouts, two distinct domains."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from stages.scenes import render_clevr_scene, render_superclevr_scene
from stages.scenes import superclevr as sc
from stages.scenes.clevr import MIN_SEP as CLEVR_MIN_SEP

RENDERERS = {"clevr": render_clevr_scene, "superclevr": render_superclevr_scene}


def _render(kind: str, seed: int, n: int, size: int = 112):
    return RENDERERS[kind](np.random.default_rng(seed), n, size)


@pytest.mark.parametrize("kind", RENDERERS)
def test_deterministic_for_a_seed_and_different_for_another(kind):
    a_img, a_objs = _render(kind, 7, 5)
    b_img, b_objs = _render(kind, 7, 5)
    c_img, _ = _render(kind, 8, 5)
    assert a_img.tobytes() == b_img.tobytes()
    assert a_objs == b_objs
    assert a_img.tobytes() != c_img.tobytes()


@pytest.mark.parametrize("kind", RENDERERS)
def test_image_format(kind):
    for size in (112, 64):
        img, _ = _render(kind, 0, 3, size)
        assert img.mode == "RGB"
        assert img.size == (size, size)


@pytest.mark.parametrize("kind", RENDERERS)
@pytest.mark.parametrize("n", range(0, 11))
def test_exactly_n_objects_inside_the_frame(kind, n):
    for seed in range(3):
        _, objs = _render(kind, seed, n)
        assert len(objs) == n
        assert sorted(o["depth_rank"] for o in objs) == list(range(n))
        for o in objs:
            r = o["radius"] if kind == "clevr" else o["size"]
            assert 5.0 <= r <= 15.0, o  # large enough to be distinct at 112 px
            assert r - 0.5 <= o["x"] <= 112 - r + 0.5
            assert 0 <= o["y"] <= 112


@pytest.mark.parametrize("kind", RENDERERS)
def test_more_objects_than_comfortably_fit_still_renders_n(kind):
    _, objs = _render(kind, 0, 16)
    assert len(objs) == 16


def test_clevr_objects_keep_the_spacing_rule():
    """Centre distances >= 0.8 x the sum of radii: overlap is limited, so every
    object stays visible and the count is well defined."""
    for seed, n in itertools.product(range(10), (6, 10)):
        _, objs = _render("clevr", seed, n)
        for a, b in itertools.combinations(objs, 2):
            d = np.hypot(a["x"] - b["x"], a["y"] - b["y"])
            assert d >= CLEVR_MIN_SEP * (a["radius"] + b["radius"]) - 0.05


def test_clevr_objects_stand_one_per_grid_cell():
    """Each object lies wholly inside its own cell (one visual token at 112 px), so none straddles two."""
    from stages.scenes.clevr import GRID

    cell = 112 / GRID
    for seed, n in itertools.product(range(10), (1, 6, 16)):
        _, objs = _render("clevr", seed, n)
        cells = {(int(o["x"] // cell), int(o["y"] // cell)) for o in objs}
        assert len(cells) == n
        for o in objs:
            col, row = int(o["x"] // cell), int(o["y"] // cell)
            assert col * cell <= o["x"] - o["radius"] and o["x"] + o["radius"] <= (col + 1) * cell
            assert row * cell <= o["y"] - o["radius"] and o["y"] + o["radius"] <= (row + 1) * cell


def test_clevr_more_objects_than_cells_is_a_clear_error():
    with pytest.raises(ValueError, match="one per grid cell"):
        _render("clevr", 0, 17)


def test_clevr_object_centres_show_the_object_not_the_floor():
    """The floor is neutral grey; at each coloured object's centre the pixel is
    clearly saturated, (max - min) / max > 0.3 (the object is drawn there and
    nothing hides it)."""
    for seed in range(20):
        img, objs = _render("clevr", seed, 8)
        arr = np.asarray(img).astype(int)
        for o in objs:
            if o["color"] == "gray":
                continue
            px = arr[int(round(o["y"])), int(round(o["x"]))]
            assert (px.max() - px.min()) / max(1, px.max()) > 0.3, (seed, o, px)


def test_superclevr_objects_keep_the_looser_spacing_rule():
    for seed in range(10):
        _, objs = _render("superclevr", seed, 10)
        for a, b in itertools.combinations(objs, 2):
            d = np.hypot(a["x"] - b["x"], (a["y"] - b["y"]) * sc.Y_STRETCH)
            assert d >= sc.MIN_SEP * (a["size"] + b["size"]) - 0.05


def test_object_attributes_come_from_each_domains_vocabulary():
    _, c = _render("clevr", 1, 10)
    _, s = _render("superclevr", 1, 10)
    assert {o["shape"] for o in c} <= {"cube", "sphere", "cylinder"}
    assert {o["material"] for o in c} <= {"rubber", "metal"}
    assert {o["shape"] for o in s} <= {"car", "bus", "motorbike", "bicycle", "aeroplane"}
    # No colour name is shared between the two palettes.
    from stages.scenes import CLEVR_COLORS, SUPERCLEVR_COLORS

    assert not set(CLEVR_COLORS) & set(SUPERCLEVR_COLORS)


def _stats(kind: str, seeds) -> dict[str, np.ndarray]:
    hists, top_bands, sats = [], [], []
    for seed in seeds:
        img, _ = _render(kind, seed, 1 + seed % 6)
        a = np.asarray(img).astype(np.float32)
        q = (a // 64).astype(int)  # 4 bins per channel
        h = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64)
        hists.append(h / h.sum())
        top_bands.append(a[:10].reshape(-1, 3).mean(0))  # background: sky vs far floor
        sats.append((a.max(-1) - a.min(-1)).mean())
    return {"hist": np.mean(hists, 0), "top": np.mean(top_bands, 0), "sat": np.mean(sats)}


def test_the_two_domains_differ_measurably():
    clevr_a, clevr_b = _stats("clevr", range(0, 12)), _stats("clevr", range(100, 112))
    super_a, super_b = _stats("superclevr", range(0, 12)), _stats("superclevr", range(100, 112))
    within = max(np.abs(clevr_a["hist"] - clevr_b["hist"]).sum(), np.abs(super_a["hist"] - super_b["hist"]).sum())
    between = np.abs(clevr_a["hist"] - super_a["hist"]).sum()
    # Mean colour histograms: the domains are far apart compared with two draws of one domain.
    assert between > 1.0 and between > 4 * within, (between, within)
    # CLEVR's background is a neutral grey; SuperCLEVR's top is a blue sky.
    r, g, b = clevr_a["top"]
    assert max(r, g, b) - min(r, g, b) < 8
    r, g, b = super_a["top"]
    assert b - r > 60
    # Overall colourfulness (mean max-min channel spread).
    assert super_a["sat"] > 2 * clevr_a["sat"]


@pytest.mark.parametrize("kind", RENDERERS)
def test_render_is_fast(kind):
    rng = np.random.default_rng(0)
    RENDERERS[kind](rng, 5)  # warm caches
    t0 = time.perf_counter()
    for i in range(50):
        RENDERERS[kind](rng, 1 + i % 10)
    per = (time.perf_counter() - t0) / 50
    assert per < 0.05, f"{kind}: {per * 1000:.1f} ms per 112 px render"
