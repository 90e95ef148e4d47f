"""`vlm-grpo grid`: stages run side by side through DVC as its graph allows, and DVC records them as `dvc repro`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stages.grid import parse_dag, ready, worker_env

DOT = '''strict digraph {
"fetch";
"a@0";
"a@1";
"report";
"fetch" -> "a@0";
"fetch" -> "a@1";
"a@0" -> "report";
"a@1" -> "report";
}
'''


def test_parse_dag_and_what_is_ready():
    needs = parse_dag(DOT)
    assert needs == {"fetch": set(), "a@0": {"fetch"}, "a@1": {"fetch"}, "report": {"a@0", "a@1"}}
    assert ready(needs, set(), set()) == ["fetch"]
    assert ready(needs, {"fetch"}, {"fetch"}) == ["a@0", "a@1"]
    assert ready(needs, {"fetch", "a@0"}, {"fetch", "a@0", "a@1"}) == []  # report waits for a@1
    assert ready(needs, {"fetch", "a@0", "a@1"}, {"fetch", "a@0", "a@1"}) == ["report"]


def test_each_worker_gets_its_threads_and_its_gpu():
    env = worker_env(1, 2, 3, ["4", "5"], base={})
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": "5"}
    assert "CUDA_VISIBLE_DEVICES" not in worker_env(0, 2, 1, None, base={})


DVC_YAML = """stages:
  fetch:
    cmd: echo data > data.txt
    outs: [data.txt]
  a:
    matrix:
      i: [0, 1, 2]
    cmd: date +%s.%N > t${item.i}.txt && sleep 2 && echo ${item.i} $OMP_NUM_THREADS > a${item.i}.txt && cat data.txt >> a${item.i}.txt && date +%s.%N >> t${item.i}.txt
    deps: [data.txt]
    outs:
      - a${item.i}.txt
  report:
    cmd: cat a0.txt a1.txt a2.txt > report.txt
    deps: [a0.txt, a1.txt, a2.txt]
    outs: [report.txt]
"""


def test_a_grid_runs_independent_stages_side_by_side_and_leaves_dvc_status_clean(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env)
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "grid", "--workers", "3", "--threads", "1"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    spans = [[float(t) for t in (tmp_path / f"t{i}.txt").read_text().split()] for i in range(3)]
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all three ran at one moment
    assert (tmp_path / "report.txt").read_text().splitlines() == ["0 1", "data", "1 1", "data", "2 1", "data"]
    status = subprocess.run(["dvc", "status"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "up to date" in status.stdout  # dvc.lock records every stage as dvc repro would
    again = subprocess.run([sys.executable, "-m", "stages.cli", "grid", "--workers", "3"], cwd=tmp_path,
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and (tmp_path / ".dvc/tmp/grid/a_0.log").read_text().count("Running stage") == 0


def test_a_failing_stage_stops_the_grid_with_one_line_naming_its_log(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages:\n  bad:\n    cmd: exit 3\n    outs: [x.txt]\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env)
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "grid"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: grid: failed: bad (exit")
    assert Path(tmp_path / ".dvc/tmp/grid/bad.log").is_file()


def test_bench_grid_compares_every_output_dvc_lock_records():
    from stages.grid_bench import differing, lock_outputs

    lock = {"stages": {"a": {"outs": [{"path": "x", "md5": "1"}, {"path": "y", "md5": "2"}]},
                       "b": {"outs": [{"path": "z", "md5": "3"}]}, "c": {"cmd": "no outputs"}}}
    a = lock_outputs(lock)
    assert a == {"a:x": "1", "a:y": "2", "b:z": "3"}
    assert differing(a, dict(a)) == []
    assert differing(a, {**a, "a:y": "9"}) == ["a:y"]
    assert differing(a, {"a:x": "1", "a:y": "2"}) == ["b:z"]  # an output only one run produced
