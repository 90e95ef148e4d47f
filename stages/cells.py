"""The grid's cells: ``PROMPT-ROLE-SEED``, as DVC's matrices name the train and eval stages and their outputs.

A cell's role is ``none`` (pure GRPO) or ``inject`` (the injection strategy of params ``injection``). Outputs are
named by role, not by strategy, so an experiment with another strategy writes the same paths: no output of an
earlier strategy is left behind to be read, and `dvc metrics diff` / `dvc plots diff` line up role by role. The
strategy an ``inject`` cell trained with is recorded in its metrics. The strategies' names come from their
registry (stages.grpo.injection), the one list of them.
"""

from __future__ import annotations

from stages.grpo.injection import STRATEGY_NAMES

PROMPT_STYLES = ("default", "r1v")
ROLES = ("none", "inject")
INJECTION_STRATEGIES = tuple(name for name in STRATEGY_NAMES if name != "none")


class CellError(ValueError):
    """A malformed cell name, or a strategy that does not fit the cell's role (one-line message)."""


def cell_name(prompt: str, role: str, seed: int) -> str:
    """The name of one grid cell, as DVC's matrices name it: ``default-inject-0``."""
    return f"{prompt}-{role}-{seed}"


def parse_cell(name: str) -> tuple[str, str, int]:
    """Inverse of :func:`cell_name`; raises CellError on a malformed name."""
    parts = name.rsplit("-", 2)
    if len(parts) != 3 or parts[0] not in PROMPT_STYLES or not parts[2].isdigit():
        raise CellError(f"cell {name!r} is invalid: expected PROMPT-ROLE-SEED, e.g. default-inject-0")
    if parts[1] not in ROLES:
        raise CellError(f"cell {name!r} is invalid: role {parts[1]!r} must be one of {', '.join(ROLES)}")
    return parts[0], parts[1], int(parts[2])


def cell_strategy(role: str, strategy: str | None) -> str:
    """The strategy a cell trains with: ``none`` for the none role, a registered strategy for the inject role."""
    if role == "none":
        if strategy not in (None, "none"):
            raise CellError(f"--strategy {strategy} is invalid for a none cell: it trains without injection")
        return "none"
    if strategy not in INJECTION_STRATEGIES:
        raise CellError(f"--strategy {strategy!r} is invalid for an inject cell: must be one of "
                        f"{', '.join(INJECTION_STRATEGIES)}")
    return strategy
