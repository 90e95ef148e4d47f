"""`dvc repro` with a wall-clock time per stage: where a full run's time goes.

    python scripts/timed_repro.py [DVC REPRO OPTIONS...]    # e.g. -f (everything), or a stage name
    python scripts/timed_repro.py study/dvc.yaml --times reports/study_times   # the study, its own tables

Runs `dvc repro` with the given options, passes its output through, and stamps each "Running stage 'X':" line
DVC prints; a stage's time runs from its line to the next one (the last stage's to DVC's exit), so DVC's own
hashing and caching around a stage count towards it. At the end it prints a table per stage family (fetch_data,
fetch_model, baseline_assess, train, evals, report) and writes it with every stage's time to
reports/stage_times.md (and reports/stage_times.json; ``--times STEM`` writes STEM.md / STEM.json instead). Stages DVC skipped as up to date take no time and are
not listed. The exit status is DVC's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

RUNNING = re.compile(r"Running stage '([^']+)'")
FAMILIES = (("fetch_data", "fetch_data"), ("fetch_model", "fetch_model (mini: build and pretrain the base)"),
            ("baseline_assess", "baseline_assess"), ("train_", "train (one stage per cell)"),
            ("eval_", "evals (CLEVR and SuperCLEVR, cells and base)"), ("report", "report"),
            ("study/dvc.yaml:study_run", "study_run (one stage per configuration: its seeds, train and evals)"),
            ("study/dvc.yaml:study_report", "study_report"))


def family(stage: str) -> str:
    return next((label for prefix, label in FAMILIES if stage.startswith(prefix)), stage)


def durations(events: list[tuple[str, float]], end: float) -> list[tuple[str, float]]:
    """(stage, start) in order -> (stage, seconds until the next stage starts or DVC ends)."""
    ends = [t for _, t in events[1:]] + [end]
    return [(stage, stop - start) for (stage, start), stop in zip(events, ends, strict=True)]


def table(times: list[tuple[str, float]], total: float) -> str:
    by_family: dict[str, list[float]] = {}
    for stage, seconds in times:
        by_family.setdefault(family(stage), []).append(seconds)
    lines = ["| stages | count | minutes | share |", "| :--- | ---: | ---: | ---: |"]
    for _, label in FAMILIES:
        if label in by_family:
            s = sum(by_family[label])
            lines.append(f"| {label} | {len(by_family[label])} | {s / 60:.1f} | {s / total:.0%} |")
    lines.append(f"| **total (`dvc repro`)** | {len(times)} | **{total / 60:.1f}** | 100% |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    out_stem = Path("reports/stage_times")
    if "--times" in argv:  # where to write the tables (default reports/stage_times.{md,json})
        i = argv.index("--times")
        out_stem, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    cmd = ["dvc", "repro", *argv]
    events: list[tuple[str, float]] = []
    t0 = time.time()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if m := RUNNING.search(line):
                events.append((m.group(1), time.time()))
        rc = proc.wait()
    end = time.time()
    total = end - t0
    times = durations(events, end)
    md = "\n".join([
        f"Per-stage wall time of `{' '.join(cmd)}` (scripts/timed_repro.py), {os.cpu_count()} CPU cores, "
        f"exit status {rc}.", "", table(times, total), "", "| stage | seconds |", "| :--- | ---: |",
        *[f"| {stage} | {seconds:.0f} |" for stage, seconds in times], ""])
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    out_stem.with_suffix(".md").write_text(md)
    out_stem.with_suffix(".json").write_text(json.dumps(
        {"command": cmd, "cpu_count": os.cpu_count(), "exit_status": rc, "total_seconds": round(total, 1),
         "stages": [{"stage": s, "seconds": round(t, 1)} for s, t in times]}, indent=2) + "\n")
    print("\n" + md)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
