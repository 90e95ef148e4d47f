"""``vlm-grpo grid``: the pipeline's stages N at a time, through DVC itself, each worker pinned to its share.

The plain way stays ``dvc repro`` (one stage after another). This runs the same stages, each by
``dvc --wait-for-lock repro --single-item STAGE`` in this workspace, as soon as every stage it depends on in DVC's
own graph (``dvc dag --dot``) is done: the 12 train cells and 28 evals of the grid are independent of each other.
DVC releases its lock while a stage's command runs, so N of them run side by side, and each records itself in
``dvc.lock`` as ``dvc repro`` would; no result passes through anything but DVC (a stage already up to date is
skipped by DVC as usual). Worker ``i`` runs its stages with ``OMP_NUM_THREADS`` = its share of the cores and,
with ``--gpus``, ``CUDA_VISIBLE_DEVICES`` = its own GPU, so no two stages fight over a core or a card.

A stage's numbers depend on the threads it computes with (BLAS splits its sums by thread on the CPU), so a grid run
at 1 thread a stage equals ``OMP_NUM_THREADS=1 dvc repro`` byte for byte, not a 2-thread ``dvc repro``; on GPUs,
one card a stage, it equals a sequential run on that card.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

EDGE = re.compile(r'^"(?P<a>[^"]+)"\s*->\s*"(?P<b>[^"]+)"')
NODE = re.compile(r'^"(?P<a>[^"]+)";?$')


def parse_dag(dot: str) -> dict[str, set[str]]:
    """``dvc dag --dot`` output -> {stage: the stages it waits for}."""
    needs: dict[str, set[str]] = {}
    for line in dot.splitlines():
        line = line.strip()
        if m := EDGE.match(line):
            needs.setdefault(m["a"], set())
            needs.setdefault(m["b"], set()).add(m["a"])
        elif m := NODE.match(line):
            needs.setdefault(m["a"], set())
    return needs


def ready(needs: dict[str, set[str]], done: set[str], started: set[str]) -> list[str]:
    """Stages not started whose every dependency is done, in the DAG's order."""
    return [s for s in needs if s not in started and needs[s] <= done]


def worker_env(index: int, workers: int, threads: int, gpus: list[str] | None, base: dict | None = None) -> dict:
    """The environment of worker ``index``: its thread count and, with ``gpus``, its own card."""
    env = dict(os.environ if base is None else base)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env


@dataclass
class Run:
    stage: str
    worker: int
    proc: subprocess.Popen
    log_path: Path
    start: float = field(default_factory=time.perf_counter)


def repro_command(stage: str) -> list[str]:
    return ["dvc", "--wait-for-lock", "repro", "--single-item", stage]


def run_grid(workers: int, threads: int, gpus: list[str] | None = None, targets: str = "dvc.yaml",
             logs: Path = Path(".dvc/tmp/grid"), poll: float = 0.5) -> dict[str, float]:
    """Run every stage of ``targets`` (a dvc.yaml) N at a time; returns seconds per stage. Raises on a failure
    (after the running stages finish), naming the stage and its log."""
    dot = subprocess.run(["dvc", "dag", "--dot", *([] if targets == "dvc.yaml" else [targets])], check=True,
                         capture_output=True, text=True).stdout
    needs = parse_dag(dot)
    logs.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    started: set[str] = set()
    running: dict[int, Run] = {}
    seconds: dict[str, float] = {}
    failed: list[str] = []
    log.info("grid: %d stages, %d workers x %d threads%s", len(needs), workers, threads,
             f", GPUs {','.join(gpus)}" if gpus else "")
    while len(done) < len(needs) and not failed:
        free = [w for w in range(workers) if w not in running]
        for stage, w in zip(ready(needs, done, started), free, strict=False):
            path = logs / f"{stage.replace('@', '_')}.log"
            fh = path.open("w")
            proc = subprocess.Popen(repro_command(stage), stdout=fh, stderr=subprocess.STDOUT,
                                    env=worker_env(w, workers, threads, gpus))
            fh.close()
            running[w] = Run(stage, w, proc, path)
            started.add(stage)
            log.info("grid: worker %d runs %s", w, stage)
        if not running:
            raise RuntimeError(f"grid: nothing can run; stages left {sorted(set(needs) - done)}")
        time.sleep(poll)
        for w, run in list(running.items()):
            code = run.proc.poll()
            if code is None:
                continue
            del running[w]
            seconds[run.stage] = round(time.perf_counter() - run.start, 1)
            if code:
                failed.append(f"{run.stage} (exit {code}; log {run.log_path})")
            else:
                done.add(run.stage)
                log.info("grid: %s done in %.0f s (%d/%d)", run.stage, seconds[run.stage], len(done), len(needs))
    for run in running.values():  # a failure: let the others finish their stage cleanly
        run.proc.wait()
    if failed:
        raise RuntimeError("grid: failed: " + "; ".join(failed))
    return seconds
