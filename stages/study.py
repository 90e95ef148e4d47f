"""Stage ``study_run@NAME`` (study/dvc.yaml): one configuration of the open-questions study, every study seed.

A configuration is a strategy and a few overrides of ``train`` / ``injection_params`` (params.yaml
``study.configs``, resolved by the CLI with :func:`stages.config.study_variant`). Each seed runs the very code of the main
grid: the train stage (with the SuperCLEVR probe every ``study.probe_every`` steps), then the eval stage on
SuperCLEVR (cross-domain) and held-out CLEVR (in-domain). The trained models are not kept: the product is one
metrics file per configuration (each seed's training summary, both evaluations with their per-question data)
and each seed's DVCLive curves (dvclive/study/NAME/seed-N), which the study report reads.

Killed at any moment, the stage resumes: a seed whose results are on disk is not run again, and a seed in
training resumes from its last checkpoint (``checkpoints/study/NAME/seed-N``; removed once the stage is done).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from stages import evaluate, train
from stages.cells import cell_name
from stages.io import InputError, atomic_dir, read_json, write_json

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)


def seed_run(cfg: Config, strategy: str, prompt: str, seed: int, base_dir: Path, data_dir: Path, live_dir: Path,
             work_dir: Path) -> dict:
    """Train one seed with ``strategy`` on ``prompt`` (curves to ``live_dir``; model, checkpoint and answers in
    ``work_dir``), then evaluate it on SuperCLEVR and held-out CLEVR; the model is deleted afterwards."""
    role = "none" if strategy == "none" else "inject"
    model_dir = work_dir / "model"
    summary = train.main(cfg, cell_name(prompt, role, seed), strategy, base_dir, data_dir, model_dir,
                         work_dir / "checkpoint", live_dir, work_dir / "train.json")
    evals = {ds: evaluate.main(cfg, ds, prompt, model_dir, data_dir, work_dir / f"{ds}.json",
                               work_dir / f"{ds}.jsonl")
             for ds in ("superclevr", "clevr")}
    shutil.rmtree(model_dir, ignore_errors=True)
    keep = ("accuracy", "digit_rate", "accuracy_given_digit", "n", "per_question", "greedy")
    return {"seed": seed, "train": summary,
            **{ds: {k: v for k, v in m.items() if k in keep} for ds, m in evals.items()}}


def main(cfg: Config, name: str, strategy: str, prompt: str, seeds: list[int], overrides: dict, base_dir: Path,
         data_dir: Path, live_root: Path, work_root: Path, metrics_path: Path) -> dict:
    """Run configuration ``name``: ``cfg`` is its resolved config (stages.config.study_variant: the study's
    overrides and probe applied), ``strategy`` its injection strategy (or none), ``overrides`` as params.yaml
    states them (recorded in the metrics).

    Writes ``metrics_path`` and ``live_root/seed-N`` per seed. ``work_root`` holds each seed's checkpoint,
    curves and results while the stage runs, so a killed stage resumes there (DVC clears the outputs before
    a run, not the work directory); it is removed at the end.
    """
    if not (base_dir / "config.json").is_file():
        raise InputError(f"{base_dir}: no base model found; run `dvc repro fetch_model` first")
    identity = {"strategy": strategy, "prompt": prompt, "train": dataclasses.asdict(cfg.train),
                "injection_params": dataclasses.asdict(cfg.injection_params), "eval": dataclasses.asdict(cfg.eval)}
    runs = []
    for seed in seeds:
        work_dir = work_root / f"seed-{seed}"
        done = work_dir / "result.json"
        # a finished seed is kept only if it was made with these very params (code and base: DVC's to track)
        if done.is_file() and (work_dir / "live").is_dir() and (old := read_json(done)).get("params") == identity:
            log.info("study %s: seed %d already done (%s)", name, seed, done)
            runs.append(old["run"])
            continue
        log.info("study %s: seed %d (%s, %s prompt)", name, seed, strategy, prompt)
        run = seed_run(cfg, strategy, prompt, seed, base_dir, data_dir, work_dir / "live", work_dir)
        write_json(done, {"params": identity, "run": run})
        runs.append(run)
    with atomic_dir(live_root) as tmp:
        for seed in seeds:
            shutil.copytree(work_root / f"seed-{seed}" / "live", tmp / f"seed-{seed}")
    write_json(metrics_path, {"config": name, "strategy": strategy, "prompt": prompt, "overrides": overrides,
                              "steps": cfg.train.steps, "runs": runs})
    shutil.rmtree(work_root, ignore_errors=True)
    return read_json(metrics_path)
