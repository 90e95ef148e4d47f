"""The grid's cells: ``PROMPT-ARM-SEED``, as DVC's matrix names the train and eval stages.

The arms are ``none`` and the injection strategies of the registry (stages.grpo.injection), the one list of
their names.
"""

from __future__ import annotations

from stages.grpo.injection import STRATEGY_NAMES

PROMPT_STYLES = ("default", "r1v")
INJECTION_STRATEGIES = tuple(name for name in STRATEGY_NAMES if name != "none")
ARMS = ("none", *INJECTION_STRATEGIES)


class CellError(ValueError):
    """A malformed cell name (one-line message)."""


def cell_name(prompt: str, arm: str, seed: int) -> str:
    """The name of one grid cell, as DVC's matrix names it: ``default-stochastic-0``."""
    return f"{prompt}-{arm}-{seed}"


def parse_cell(name: str) -> tuple[str, str, int]:
    """Inverse of :func:`cell_name`; raises CellError on a malformed name."""
    parts = name.rsplit("-", 2)
    if len(parts) != 3 or parts[0] not in PROMPT_STYLES or not parts[2].isdigit():
        raise CellError(f"cell {name!r} is invalid: expected PROMPT-ARM-SEED, e.g. default-stochastic-0")
    arm = parts[1]
    if arm not in ARMS:
        allowed = ", ".join(ARMS)
        raise CellError(f"cell {name!r} is invalid: arm {arm!r} must be one of {allowed}")
    return parts[0], arm, int(parts[2])
