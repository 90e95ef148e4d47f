"""``vlm-grpo bench-grid``: the whole pipeline one stage at a time against ``vlm-grpo grid``, in one run.

Two fresh clones of this repository's HEAD (scratch folders, each with an empty DVC cache, so every stage runs):
``dvc repro`` with ``--threads`` threads, then ``vlm-grpo grid --workers N --threads T`` (N workers, T threads
each). Wall times, and whether every output of every stage (the md5s ``dvc.lock`` records) is the same in both.
On a CPU the numbers of a stage depend on its thread count, so only runs with equal threads a stage can be
byte-identical (``--threads 1 --workers 2 --worker-threads 1``); ``differing`` lists the outputs that are not.
Writes ``reports/benchmarks.json`` key ``grid_parallel`` (other keys kept). The mini grid takes about 30-40 min
sequentially on 2 cores: a benchmark, not a test.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from stages.io import read_json, write_json

log = logging.getLogger(__name__)


def lock_outputs(lock: dict) -> dict[str, str]:
    """``{stage:path: md5}`` of every output ``dvc.lock`` records (what a run produced, byte for byte)."""
    out = {}
    for stage, entry in (lock.get("stages") or {}).items():
        for o in entry.get("outs", []):
            out[f"{stage}:{o['path']}"] = o.get("md5", "")
    return out


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Outputs whose md5 differs, or that only one run produced (sorted)."""
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def clone(repo: Path, where: Path) -> Path:
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(repo), str(where)], check=True)
    return where


def run_timed(cmd: list[str], cwd: Path, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(cwd)}  # the clone's code, not the editable install's
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True)
    return time.perf_counter() - t0


def main(repo: Path, scratch: Path, workers: int, threads: int, worker_threads: int, out_json: Path,
         command: str = "vlm-grpo bench-grid") -> dict:
    seq = clone(repo, scratch / "sequential")
    par = clone(repo, scratch / "parallel")
    log.info("bench-grid: dvc repro with %d threads in %s", threads, seq)
    sequential_s = run_timed(["dvc", "repro"], seq, threads)
    log.info("bench-grid: vlm-grpo grid, %d workers x %d threads, in %s", workers, worker_threads, par)
    parallel_s = run_timed([sys.executable, "-m", "stages.cli", "grid", "--workers", str(workers), "--threads",
                            str(worker_threads)], par, worker_threads)
    a, b = (lock_outputs(yaml.safe_load((d / "dvc.lock").read_text())) for d in (seq, par))
    diff = differing(a, b)
    result = {"sequential_s": round(sequential_s, 1), "parallel_s": round(parallel_s, 1),
              "ratio": round(sequential_s / parallel_s, 3), "workers": workers, "worker_threads": worker_threads,
              "sequential_threads": threads, "identical": not diff, "outputs": len(a), "differing": diff,
              "cpus": os.cpu_count(), "command": command}
    previous = read_json(out_json) if out_json.is_file() else {}
    write_json(out_json, {**previous, "grid_parallel": result})
    return result
