"""The offline renderer of the mini world: two visually distinct counting domains."""

from stages.scenes.clevr import CLEVR_COLORS, CLEVR_SHAPES, render_clevr_scene
from stages.scenes.superclevr import SUPERCLEVR_COLORS, SUPERCLEVR_SHAPES, render_superclevr_scene

__all__ = [
    "CLEVR_COLORS",
    "CLEVR_SHAPES",
    "SUPERCLEVR_COLORS",
    "SUPERCLEVR_SHAPES",
    "render_clevr_scene",
    "render_superclevr_scene",
]
