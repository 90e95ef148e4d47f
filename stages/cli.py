"""``vlm-grpo``: one subcommand per pipeline stage.  DVC calls these (see dvc.yaml); so can you.

Every command validates params.yaml first and stops with a one-line error before touching data or models.
Output paths are given on the command line by dvc.yaml, the single place that names them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from stages.config import Config, ConfigError, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="GRPO with guidance injection for Qwen2-VL on CLEVR counting: the pipeline's stages.\n\n"
    "Run the whole pipeline with `dvc repro`; each stage is also a command here.",
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file to read.")]
log = logging.getLogger("vlm_grpo")


def _setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _config(params: Path) -> Config:
    try:
        return load_config(params)
    except ConfigError as err:
        _fail(str(err), 2)


def _run(fn, *args):
    """Run a stage body, turning the project's own input errors into one line and exit status 1."""
    from stages.data import DataError, DataUnavailableError
    from stages.fetch_model import ModelUnavailableError

    try:
        return fn(*args)
    except (DataError, DataUnavailableError, ModelUnavailableError, ConfigError) as err:
        _fail(str(err), 1)


@app.command("check-params")
def check_params(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print the resolved configuration of the active profile."""
    import dataclasses
    import json

    cfg = _config(params)
    typer.echo(json.dumps(dataclasses.asdict(cfg), indent=2))


@app.command("fetch-data")
def fetch_data(
    out: Annotated[Path, typer.Option(help="Directory for the datasets (clevr/, superclevr/).")] = Path("data/datasets"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stage fetch_data. Reads params fetch_data.* ; writes OUT/clevr (train, heldout) and OUT/superclevr.

    mini: renders CLEVR-mini and SuperCLEVR-mini offline. blog: downloads leonardPKU/clevr_cogen_a_train
    and the 200 SuperCLEVR counting questions (or reads local copies under fetch_data.raw_dir).
    """
    cfg = _config(params)
    _setup()
    from stages import fetch_data as stage

    _run(stage.main, cfg, out)


@app.command("fetch-model")
def fetch_model(
    out: Annotated[Path, typer.Option(help="Directory for the base model (from_pretrained loads it).")] = Path("models/base"),
    metrics: Annotated[Path, typer.Option(help="JSON with the base model's quick check.")] = Path("metrics/fetch_model.json"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stage fetch_model. Reads params fetch_model.*, fetch_data.*; writes OUT and METRICS.

    mini: builds a tiny Qwen2-VL offline and pretrains it (SFT) to the blog's base behaviour, then reports its
    digit rate and accuracy per prompt style on a sample. blog: snapshots Qwen/Qwen2-VL-2B-Instruct.
    """
    cfg = _config(params)
    _setup()
    from stages import fetch_model as stage

    result = _run(stage.main, cfg, out, metrics)
    for style, m in result.get("check", {}).items():
        log.info("base model, %s prompt: digit rate %.1f%%, accuracy %.1f%%, accuracy given digit %.1f%% (n=%d)",
                 style, 100 * m["digit_rate"], 100 * m["accuracy"], 100 * m["accuracy_given_digit"], m["n"])


@app.command("train")
def train(
    cell: Annotated[str, typer.Argument(help="The grid cell PROMPT-ARM-SEED, e.g. default-stochastic-0.")],
    base: Annotated[Path, typer.Option(help="The base model directory.")] = Path("models/base"),
    data: Annotated[Path, typer.Option(help="The datasets directory written by fetch-data.")] = Path("data/datasets"),
    out: Annotated[Path, typer.Option(help="Directory for the trained model.")] = Path("models/cell"),
    checkpoints: Annotated[Path, typer.Option(help="Checkpoint directory (kept between runs to resume).")] = Path("checkpoints/cell"),
    live: Annotated[Path, typer.Option(help="DVCLive directory for the per-step logs.")] = Path("dvclive/train/cell"),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON (steps to threshold, time).")] = Path("metrics/train/cell.json"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stage train@CELL. Reads params train.*, the base model and CLEVR's train split; writes OUT, LIVE, METRICS.

    GRPO with the cell's prompt style and injection arm ('none' or a strategy), resuming from CHECKPOINTS when
    a matching checkpoint is there. Use `accelerate launch -m stages.cli train ...` for several processes.
    """
    cfg = _config(params)
    from stages.config import parse_cell

    try:
        parse_cell(cell)
    except ConfigError as err:
        _fail(str(err), 2)
    _setup()
    from stages import train as stage

    summary = _run(stage.main, cfg, cell, base, data, out, checkpoints, live, metrics)
    log.info("%s: %s", cell, summary)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
