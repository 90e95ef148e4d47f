"""``vlm-grpo``: one subcommand per pipeline stage.  DVC calls these (see dvc.yaml); so can you.

Every command validates params.yaml first and stops with a one-line error before touching data or models.
Output paths are given on the command line by dvc.yaml, the single place that names them.
"""

from __future__ import annotations

import logging
import os
import subprocess
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
BaseOpt = Annotated[Path, typer.Option(help="The base model directory.")]
DataOpt = Annotated[Path, typer.Option(help="The datasets directory written by fetch-data.")]
log = logging.getLogger("vlm_grpo")

# The module each command runs (imported on use, so `--help` and a bad param stay fast). dvc.yaml's stages call
# these commands; tests/test_dvc_deps.py follows this map to check that every file a stage runs is a dep of it.
STAGE_MODULES = {
    "fetch-data": "stages.fetch_data",
    "fetch-model": "stages.fetch_model",
    "baseline-assess": "stages.baseline_assess",
    "train": "stages.train",
    "eval": "stages.evaluate",
    "report": "stages.report",
    "bench": "stages.bench",
    "bench-learning": "stages.learning_bench",
    "gpu-check": "stages.gpu_check",
    "grid": "stages.grid",
    "bench-grid": "stages.grid_bench",
    "study-run": "stages.study",
    "study-report": "stages.study_report",
}


def _stage(command: str):
    import importlib

    return importlib.import_module(STAGE_MODULES[command])


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
    from stages.counting.questions import DataError
    from stages.counting.sources import DataUnavailableError
    from stages.devices import DeviceError
    from stages.fetch_model import ModelUnavailableError
    from stages.io import InputError

    try:
        return fn(*args)
    except (DataError, DataUnavailableError, ModelUnavailableError, ConfigError, InputError, DeviceError) as err:
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
    stage = _stage("fetch-data")

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
    stage = _stage("fetch-model")

    result = _run(stage.main, cfg, out, metrics)
    for style, m in result.get("check", {}).items():
        log.info("base model, %s prompt: digit rate %.1f%%, accuracy %.1f%%, accuracy given digit %.1f%% (n=%d)",
                 style, 100 * m["digit_rate"], 100 * m["accuracy"], 100 * m["accuracy_given_digit"], m["n"])


def launch_command(argv: list[str], num_processes: int) -> list[str]:
    """The command that runs this program (``argv``: the ``vlm-grpo`` script and its arguments) on
    ``num_processes`` local processes under torch.distributed.run; each sees LOCAL_RANK, so none relaunches."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
            *argv]


@app.command("train")
def train(
    cell: Annotated[str, typer.Argument(help="The grid cell PROMPT-ROLE-SEED, e.g. default-inject-0 (role: none, inject).")],
    strategy: Annotated[str | None, typer.Option(help="The injection strategy of an inject cell: stochastic, ensure_one, "
                                                       "decay, cosine, fixed, adaptive. Default: params `injection` (as dvc.yaml runs "
                                                       "it), validated with the other params.")] = None,
    base: BaseOpt = Path("models/base"),
    data: DataOpt = Path("data/datasets"),
    out: Annotated[Path, typer.Option(help="Directory for the trained model.")] = Path("models/cell"),
    checkpoints: Annotated[Path, typer.Option(help="Checkpoint directory (kept between runs to resume).")] = Path("checkpoints/cell"),
    live: Annotated[Path, typer.Option(help="DVCLive directory for the per-step logs.")] = Path("dvclive/train/cell"),
    metrics: Annotated[Path, typer.Option(help="Summary metrics JSON (steps to threshold, time).")] = Path("metrics/train/cell.json"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stages train_none@PROMPT-SEED, train_inject@PROMPT-SEED. Reads params train.*, injection_params.*, the base
    model and CLEVR's train split; writes OUT, LIVE, METRICS.

    GRPO with the cell's prompt style, without injection (role none) or with STRATEGY (role inject), resuming from
    CHECKPOINTS when a matching checkpoint is there. Several processes (GPUs): params execution.num_processes=N makes
    this command relaunch itself under torch.distributed.run; `accelerate launch --num_processes N -m stages.cli
    train ...` or torchrun work too.
    """
    cfg = _config(params)
    from stages.cells import CellError, cell_strategy, parse_cell

    try:
        role = parse_cell(cell)[1]
        if role == "inject" and strategy is None:
            # read here, not interpolated into dvc.yaml's cmd: a bad `injection` (a list, say) then fails in
            # params validation with a line naming the key, not in DVC's parser
            strategy = cfg.injection
        strategy = cell_strategy(role, strategy)
    except CellError as err:
        _fail(str(err), 2)
    _setup()
    if cfg.execution.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        # params execution.num_processes: run this very command on N processes (one per GPU), as torchrun would
        command = launch_command(sys.argv, cfg.execution.num_processes)
        log.info("execution.num_processes=%d: %s", cfg.execution.num_processes, " ".join(command))
        raise typer.Exit(subprocess.run(command, check=False).returncode)
    stage = _stage("train")

    summary = _run(stage.main, cfg, cell, strategy, base, data, out, checkpoints, live, metrics)
    log.info("%s: %s", cell, summary)


@app.command("baseline-assess")
def baseline_assess(
    base: BaseOpt = Path("models/base"),
    data: DataOpt = Path("data/datasets"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON per prompt style.")] = Path("metrics/baseline.json"),
    table: Annotated[Path, typer.Option(help="Markdown tables.")] = Path("reports/baseline_assess.md"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stage baseline_assess. Reads params baseline_assess.*, eval.* (decoding); writes METRICS and TABLE.

    Per prompt style, on held-out CLEVR: digit (format) rate, accuracy, accuracy given a digit, and the chance
    of any learning signal 1-(1-p)^G at the blog's p values and at the measured p.
    """
    cfg = _config(params)
    _setup()
    stage = _stage("baseline-assess")

    _run(stage.main, cfg, base, data, metrics, table)


@app.command("eval")
def evaluate(
    dataset: Annotated[str, typer.Argument(help="clevr (held-out, in-domain) or superclevr (cross-domain).")],
    prompt: Annotated[str, typer.Argument(help="Prompt style: default or r1v.")],
    model: Annotated[Path, typer.Option(help="Model directory: models/base or models/CELL.")] = Path("models/base"),
    data: DataOpt = Path("data/datasets"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON.")] = Path("metrics/eval/out.json"),
    answers: Annotated[Path, typer.Option(help="Per-question answers (JSON lines).")] = Path("metrics/eval/out.jsonl"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stages eval_clevr / eval_superclevr. Reads params eval.*, MODEL, the dataset; writes METRICS and ANSWERS.

    Accuracy, number-present rate and accuracy per true count, with the decoding of params eval.*.
    """
    from stages.cells import PROMPT_STYLES

    cfg = _config(params)
    if dataset not in ("clevr", "superclevr"):
        _fail(f"dataset {dataset!r} is invalid: must be clevr or superclevr", 2)
    if prompt not in PROMPT_STYLES:
        _fail(f"prompt {prompt!r} is invalid: must be one of {', '.join(PROMPT_STYLES)}", 2)
    _setup()
    stage = _stage("eval")

    _run(stage.main, cfg, dataset, prompt, model, data, metrics, answers)


@app.command("report")
def report(
    metrics: Annotated[Path, typer.Option(help="The metrics directory (baseline, train, eval).")] = Path("metrics"),
    live: Annotated[Path, typer.Option(help="The DVCLive training logs directory.")] = Path("dvclive/train"),
    out: Annotated[Path, typer.Option(help="Report directory: report.md and figures/.")] = Path("reports"),
    summary: Annotated[Path, typer.Option(help="Flat summary metrics keyed by role.")] = Path("reports/summary.json"),
    answers: Annotated[Path, typer.Option(help="The evaluations' answers (answers/{clevr,superclevr}/*.jsonl).")
                       ] = Path("answers"),
    base: Annotated[Path, typer.Option(help="The base model directory; only its tokenizer is read (answer "
                                            "lengths in tokens).")] = Path("models/base"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stage report. Reads metrics, logs, the evaluations' answers and the base's tokenizer (of params: the grid,
    train.*, baseline_assess.group_size and the fetch_model calibration of the mini base model); writes
    OUT/report.md, OUT/figures/*.png and SUMMARY.

    Every figure and table of the blog from this pipeline's measurements with 95% intervals, the blog's numbers
    beside ours, a claims table with a verdict per finding (decided on the intervals) and a premises table.
    """
    cfg = _config(params)
    _setup()
    stage = _stage("report")

    _run(stage.main, cfg, metrics, live, out, summary, answers, base)


@app.command("study-run")
def study_run(
    name: Annotated[str, typer.Argument(help="A configuration of params.yaml study.configs, e.g. fixed-1-shaped.")],
    base: BaseOpt = Path("models/base"),
    data: DataOpt = Path("data/datasets"),
    live: Annotated[Path, typer.Option(help="The configuration's DVCLive directory: one seed-N directory per seed.")] = Path("dvclive/study/run"),
    work: Annotated[Path, typer.Option(help="Checkpoints and finished seeds while the stage runs (to resume).")] = Path("checkpoints/study/run"),
    metrics: Annotated[Path, typer.Option(help="The configuration's metrics JSON (every seed).")] = Path("metrics/study/run.json"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stage study_run@NAME (study/dvc.yaml). Reads params study.*, train.*, injection_params.*, eval.*, the base
    model and the datasets; writes METRICS and LIVE/seed-N.

    For every study seed: GRPO on the study's prompt with configuration NAME's strategy and overrides (the
    SuperCLEVR probe on), then the trained model on SuperCLEVR and held-out CLEVR. The models are not kept.
    """
    cfg = _config(params)
    from stages.config import study_variant

    try:
        variant = study_variant(cfg, name)
    except ConfigError as err:
        _fail(str(err), 2)
    _setup()
    stage = _stage("study-run")

    _run(stage.main, variant, name, variant.injection, cfg.study.prompt, cfg.study.seeds, cfg.study.configs[name],
         base, data, live, work, metrics)


@app.command("study-report")
def study_report(
    metrics: Annotated[Path, typer.Option(help="The study's metrics directory (one JSON per configuration).")] = Path("metrics/study"),
    live: Annotated[Path, typer.Option(help="The study's DVCLive root.")] = Path("dvclive/study"),
    out: Annotated[Path, typer.Option(help="Report directory: study.md and figures_study/.")] = Path("reports"),
    summary: Annotated[Path, typer.Option(help="Flat per-configuration summary metrics.")] = Path("metrics/study_summary.json"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stage study_report (study/dvc.yaml). Reads the study's metrics and logs (of params: study.*, the
    training's threshold and rolling window); writes OUT/study.md, OUT/figures_study/*.png and SUMMARY.

    The speed-vs-transfer map with intervals and the Pareto front, the cross-domain format lag, and a table
    answering the blog's open questions with a verdict rule each.
    """
    cfg = _config(params)
    _setup()
    stage = _stage("study-report")

    _run(stage.main, cfg, metrics, live, out, summary)


@app.command("bench")
def bench(
    base: Annotated[Path, typer.Option(help="The model to benchmark (mini: models/base).")] = Path("models/base"),
    data: DataOpt = Path("data/datasets"),
    repeats: Annotated[int, typer.Option(min=1, help="Timed steps of each (after one warm-up step).")] = 5,
    trl: Annotated[bool, typer.Option(help="Also time TRL's GRPOTrainer (needs the 'bench' extra).")] = True,
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("reports/benchmarks.json"),
    md: Annotated[Path, typer.Option(help="Readable results.")] = Path("reports/benchmarks.md"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Benchmark one GRPO step of ours against TRL's GRPOTrainer (4 prompts x 8, 50 tokens, 4 epochs, fp32).

    Writes OUT and MD: medians, min, max, the ratio, our step by phase, and peak memory. Not a DVC stage.
    """
    cfg = _config(params)
    _setup()
    stage = _stage("bench")

    command = "vlm-grpo " + " ".join(sys.argv[1:])
    result = _run(stage.main, cfg, base, data, repeats, out, md, trl, params, command)
    typer.echo(md.read_text() if md.is_file() else result)


@app.command("bench-learning")
def bench_learning(
    base: Annotated[Path, typer.Option(help="The base both trainers start from (mini: models/base).")] = Path("models/base"),
    data: DataOpt = Path("data/datasets"),
    seeds: Annotated[list[int], typer.Option("--seed", help="A seed to train both with (repeat the option).")] = [0, 1],  # noqa: B006
    steps: Annotated[int | None, typer.Option(min=1, help="GRPO steps per run (default: the profile's train.steps).")] = None,
    out: Annotated[Path, typer.Option(help="JSON results (key learning_vs_trl; other keys kept).")] = Path("reports/benchmarks.json"),
    md: Annotated[Path, typer.Option(help="Readable results.")] = Path("reports/learning_vs_trl.md"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Train ours and TRL's GRPOTrainer (the 'bench' extra) from the same base, on the same data and settings, for
    each seed, and report the steps each takes to reach the rolling training accuracy threshold.

    Default prompt, no injection, the profile's train params (steps, lr and warmup, G, passes, clip, sampling).
    Mini profile, 2 seeds: about 15 minutes on 2 cores. Writes OUT (learning_vs_trl: ours, trl, seeds, settings,
    per-step accuracy) and MD. Not a DVC stage.
    """
    import dataclasses

    cfg = _config(params)
    if steps is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))
    if not (base / "config.json").is_file():
        _fail(f"{base}: no base model; run `dvc repro fetch_model` first (or pass --base)", 1)
    _setup()
    stage = _stage("bench-learning")

    command = "vlm-grpo " + " ".join(sys.argv[1:])
    _run(stage.main, cfg, base, data, seeds, out, md, command)
    typer.echo(md.read_text())


@app.command("gpu-check")
def gpu_check(
    model: Annotated[Path, typer.Option(help="A downloaded Qwen2-VL-2B-Instruct, used when it holds config.json; "
                                             "else a model of its shape with random weights (nothing to download).")]
    = Path("data/raw/Qwen2-VL-2B-Instruct"),
    steps: Annotated[int, typer.Option(min=1, help="Timed GRPO steps (the round trip adds one on each trainer).")] = 3,
    out: Annotated[Path, typer.Option(help="JSON results (every check's record).")] = Path("reports/gpu_check.json"),
    allow_cpu: Annotated[bool, typer.Option("--allow-cpu", help="Run on the CPU, in fp32: the GPU checks are n/a and "
                                                                "memory is not judged (the test suite's use).")] = False,
    widths: Annotated[str, typer.Option(help="Random-weight model: 2b (Qwen2-VL-2B-Instruct's widths and "
                                             "vocabulary) or mini (the mini profile's tiny model, for the CPU).")] = "2b",
    text_layers: Annotated[int | None, typer.Option(min=1, help="Text layers of the random-weight model "
                                                                "(default: full depth, 28 for 2b).")] = None,
    vision_depth: Annotated[int | None, typer.Option(min=1, help="Vision blocks of the random-weight model "
                                                                 "(default: full depth, 32 for 2b).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Completion length, every row pinned to it "
                                                                   "(default: the blog profile's train.max_new_tokens, "
                                                                   "50).")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Self-test of a GPU box before the real study: about 2-5 minutes on one GPU at the full 2B; no download.
    Not a DVC stage.

    With the blog profile's train params (4 prompts x G = 8, 50 new tokens, 4 passes, bf16-mixed) and a frozen
    reference model, checks: cuda and bf16; a few GRPO steps (seconds by phase: generation, reference forward,
    forward-backward, optimizer, checkpoint save); their peak GPU memory against `vlm-grpo plan`'s prediction (within
    15%); the first pass's ratio exp(logp - old_logp) is 1 (within 1e-2 in bf16); greedy left-padded batched
    generation equals one prompt at a time; a checkpoint save -> load round trip (same weights and optimizer state,
    the same next step); an all-reduce under `torchrun --nproc_per_node N -m stages.cli gpu-check`. Prints a
    pass/fail table, writes OUT (and, while it runs, a checkpoint beside it: 26.5 GB for the 2B, fp32 weights and
    AdamW state); exit status 1 when a judged check fails. Random weights: completions pinned to
    max_new_tokens and a checksum reward (see stages/gpu_check.py). The test suite runs it on the CPU in seconds:
    --allow-cpu --widths mini --text-layers 1 --vision-depth 1 --steps 2 --max-new-tokens 4.
    """
    from stages import plan as planner

    if widths not in ("2b", "mini"):
        _fail(f"--widths {widths!r} is invalid: must be 2b or mini", 2)
    try:
        cfg = planner.load_profile_config(params, "blog")
    except ConfigError as err:
        _fail(str(err), 2)
    _setup()
    stage = _stage("gpu-check")

    command = "vlm-grpo " + " ".join(sys.argv[1:])
    report = _run(stage.main, cfg, model, steps, out, allow_cpu, widths, text_layers, vision_depth, max_new_tokens,
                  command)
    if report["main_process"]:
        typer.echo(stage.table(report))
    raise typer.Exit(0 if report["ok"] else 1)


@app.command("grid")
def grid(
    workers: Annotated[int, typer.Option(min=1, help="Stages run side by side (one per GPU with --gpus).")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads of each stage (OMP_NUM_THREADS).")] = 1,
    gpus: Annotated[str, typer.Option(help="Comma-separated GPU ids, one per worker in turn (CUDA_VISIBLE_DEVICES); "
                                           "empty: CPU.")] = "",
    pipeline: Annotated[str, typer.Option(help="The dvc.yaml to run (study/dvc.yaml for the study).")] = "dvc.yaml",
) -> None:
    """Run the pipeline's stages WORKERS at a time through DVC (`dvc --wait-for-lock repro --single-item STAGE`
    as soon as DVC's graph allows), each worker with THREADS threads and its own GPU. The same stages, params, cache
    and dvc.lock as `dvc repro`, the plain way. Numbers depend on the threads a stage computes with (CPU) or its
    card: a 1-thread grid equals `OMP_NUM_THREADS=1 dvc repro`. 8 GPUs: --workers 8 --gpus 0,1,2,3,4,5,6,7.
    Logs per stage in .dvc/tmp/grid/.
    """
    _setup()
    stage = _stage("grid")
    ids = [g for g in gpus.split(",") if g.strip()]
    try:
        seconds = stage.run_grid(workers, threads, ids or None, pipeline)
    except RuntimeError as err:
        _fail(str(err), 1)
    typer.echo(f"grid: {len(seconds)} stages; longest {max(seconds.values(), default=0):.0f} s")


@app.command("bench-grid")
def bench_grid(
    workers: Annotated[int, typer.Option(min=1, help="Workers of the parallel run.")] = 2,
    worker_threads: Annotated[int, typer.Option(min=1, help="Threads of each worker.")] = 1,
    threads: Annotated[int, typer.Option(min=1, help="Threads of the sequential `dvc repro`.")] = 2,
    scratch: Annotated[Path, typer.Option(help="Where the two clones run (gitignored).")] = Path(".bench-grid"),
    out: Annotated[Path, typer.Option(help="JSON results (key grid_parallel; other keys kept).")] = Path("reports/benchmarks.json"),
) -> None:
    """The whole pipeline from nothing, `dvc repro` (THREADS threads) against `vlm-grpo grid` (WORKERS x
    WORKER_THREADS), each in a fresh clone of HEAD: wall times, their ratio, and whether every output is byte
    identical (on a CPU only equal threads a stage can be). Mini profile: about an hour on 2 cores. Not a stage.
    """
    _setup()
    stage = _stage("bench-grid")
    command = "vlm-grpo " + " ".join(sys.argv[1:])
    result = stage.main(Path.cwd(), scratch, workers, threads, worker_threads, out, command)
    typer.echo(result)


@app.command("rehearsal-inputs")
def rehearsal_inputs(
    raw: Annotated[Path, typer.Option(help="Where the blog profile reads local copies (params fetch_data.raw_dir).")] = Path("data/raw"),
    clevr_rows: Annotated[int, typer.Option(min=2, help="CLEVR rows in leonardPKU/clevr_cogen_a_train's parquet layout.")] = 24,
    superclevr: Annotated[int, typer.Option(min=1, help="SuperCLEVR questions in R1-V's jsonl + images layout.")] = 8,
    text_layers: Annotated[int, typer.Option(min=1, help="Text layers of the stand-in (the real model has 28).")] = 1,
    vision_depth: Annotated[int, typer.Option(min=1, help="Vision blocks of the stand-in (the real model has 32).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the scenes and the stand-in's random weights.")] = 0,
) -> None:
    """Write the inputs of an offline rehearsal of the blog profile under RAW: CLEVR and SuperCLEVR in the real
    datasets' layouts (480x320 PNG) and a Qwen2-VL-2B-Instruct stand-in (real widths, vocabulary, special tokens
    and image processor; few layers; random weights). Then `bash scripts/rehearse_blog.sh` runs the pipeline.
    Not a DVC stage; the outputs are gitignored.
    """
    _setup()
    from stages import rehearsal

    _run(rehearsal.main, raw, clevr_rows, superclevr, text_layers, vision_depth, seed)


@app.command("plan")
def plan(
    profile: Annotated[str, typer.Option(help="The params.yaml profile whose train section sets B, G, T, precision.")] = "blog",
    model_dir: Annotated[Path | None, typer.Option(help="Read this model dir's config.json (e.g. models/base) "
                                                       "instead of Qwen2-VL-2B-Instruct's published shape.")] = None,
    image_width: Annotated[int, typer.Option(min=28, help="Image width in pixels (CLEVR: 480).")] = 480,
    image_height: Annotated[int, typer.Option(min=28, help="Image height in pixels (CLEVR: 320).")] = 320,
    text_tokens: Annotated[int, typer.Option(min=1, help="Prompt tokens besides the image's.")] = 60,
    reference: Annotated[str, typer.Option(help="Count the reference model: auto (when kl_coef > 0), always (as "
                                                "train.py loads it today), never.")] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the numbers as JSON here.")] = None,
    measure: Annotated[bool, typer.Option(help="Check the activation estimate against a CPU stand-in (2B widths, "
                                               "few layers, random weights): estimate vs measured; minutes.")] = False,
    measure_layers: Annotated[int, typer.Option(min=1, help="--measure: text layers of the stand-in.")] = 2,
    measure_vocab: Annotated[int, typer.Option(min=1024, help="--measure: vocabulary of the stand-in.")] = 151936,
    measure_prompts: Annotated[int, typer.Option(min=1, help="--measure: prompts B (G, T from the profile).")] = 2,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Will one GRPO step of the full Qwen2-VL-2B fit on a 24, 40 or 80 GB GPU? Not a DVC stage.

    Prints the peak GPU memory of one training step component by component (weights, gradients, AdamW, reference,
    activations, logits, KV caches) for the profile's train params, and an options table: precision x gradient
    checkpointing x full / LoRA x rows per forward, with the peak and whether it fits each card.
    """
    from stages import plan as planner

    if reference not in ("auto", "always", "never"):
        _fail(f"--reference {reference!r} is invalid: must be auto, always or never", 2)
    try:
        typer.echo(planner.run(params, profile, model_dir, image_width, image_height, text_tokens, reference, json_out))
        if measure:
            typer.echo("")
            typer.echo(planner.run_measure(params, profile, layers=measure_layers, vocab=measure_vocab,
                                           prompts=measure_prompts, width=image_width, height=image_height,
                                           text_tokens=text_tokens))
    except ConfigError as err:
        _fail(str(err), 2)
    except (FileNotFoundError, RuntimeError) as err:
        _fail(str(err), 1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
