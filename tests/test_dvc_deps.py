"""dvc.yaml declares exactly what each stage runs and reads, derived from the code itself.

For every stage: the command's module (stages.cli.STAGE_MODULES) and the static closure of its imports
(stages.source_closure) give the package files it runs; each must be covered by a declared dep, and each
declared code dep must hold a file it runs. The params it reads are found in those files as ``cfg.<section>``
or ``cfg.<section>.<key>`` (the Config object is always called ``cfg``: checked below), also through a local
alias (``e = cfg.eval`` then ``e.batch_size``); each must be declared, with the active profile's overrides of its
section, and nothing else may be (a needless param re-runs a stage for nothing: `injection` on the train
cells would retrain the `none` arm on `-S injection=decay`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from stages.cli import STAGE_MODULES
from stages.config import SECTIONS
from stages.source_closure import import_closure

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = {"profile", "injection", "prompt_styles", "seeds"}


def _stages() -> dict[str, dict]:
    """The main pipeline's stages, and the study's (study/dvc.yaml, paths relative to the root: wdir ..)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    study = yaml.safe_load((REPO / "study" / "dvc.yaml").read_text())["stages"]
    return {**stages, **{f"study/{name}": stage for name, stage in study.items()}}


def _body(stage: dict) -> dict:
    return stage.get("do", stage)  # foreach stages keep their definition under `do`


def stage_module(stage: dict) -> str:
    command = re.match(r"\s*vlm-grpo\s+([\w-]+)", _body(stage)["cmd"])
    assert command, f"not a vlm-grpo command: {_body(stage)['cmd']!r}"
    return STAGE_MODULES[command.group(1)]


def code_deps(stage: dict) -> list[str]:
    return [d for d in _body(stage).get("deps", []) if isinstance(d, str) and d.startswith("stages")]


def declared_params(stage: dict) -> set[str]:
    return {p for p in _body(stage).get("params", []) if isinstance(p, str)}


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def params_read(files: list[Path]) -> set[str]:
    """``section`` (whole) or ``section.key`` for every read of the Config in ``files``; top-level keys as is."""
    reads: set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        aliases: dict[str, str] = {}  # local name -> section, from `x = cfg.section` (also in tuples)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for target, value in zip(targets, values, strict=False):
                    if (isinstance(target, ast.Name) and isinstance(value, ast.Attribute)
                            and isinstance(value.value, ast.Name) and value.value.id == "cfg"):
                        aliases[target.id] = value.attr
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cfg":
                name = node.attr
                parent = parents.get(node)
                if name in SECTIONS and isinstance(parent, ast.Attribute):
                    reads.add(f"{name}.{parent.attr}")
                elif name in SECTIONS:
                    alias_target = isinstance(parent, (ast.Assign, ast.Tuple))
                    if not alias_target:
                        reads.add(name)
                else:
                    reads.add(name)
            elif isinstance(node, ast.Name) and node.id in aliases and not isinstance(node.ctx, ast.Store):
                parent = parents.get(node)
                section = aliases[node.id]
                reads.add(f"{section}.{parent.attr}" if isinstance(parent, ast.Attribute) else section)
    return reads


def needed_params(reads: set[str]) -> set[str]:
    """What dvc.yaml must declare for these reads: top-level keys, sections or keys, and profile overrides."""
    needed = set()
    for read in reads:
        section = read.split(".")[0]
        if section == "execution":  # how a stage runs, never a param of one (tests/test_execution.py)
            continue
        needed.add(read)
        if section in SECTIONS:
            needed.add(f"profiles.${{profile}}.{section}")
    return needed


def satisfied(read: str, declared: set[str]) -> bool:
    parts = read.split(".")
    return any(".".join(parts[:i]) in declared for i in range(1, len(parts) + 1))


STAGES = _stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_file_a_stage_runs_is_a_declared_dep(name):
    stage = STAGES[name]
    runs = [p.relative_to(REPO).as_posix() for p in import_closure(stage_module(stage))]
    deps = code_deps(stage)
    missing = [f for f in runs if not covered(f, deps)]
    assert not missing, f"stage {name} runs {missing} but does not declare them as deps"
    needless = [d for d in deps if not any(covered(f, [d]) for f in runs)]
    assert not needless, f"stage {name} declares {needless} but runs no file there"


def cli_reads(stage: dict) -> set[str]:
    """Params the CLI itself reads for a stage: `vlm-grpo train` of an inject cell takes its strategy from params
    `injection` when the command gives no --strategy (stages/cli.py, train)."""
    cmd = _body(stage)["cmd"]
    if re.search(r"vlm-grpo\s+study-run\s", cmd):
        # the CLI resolves the configuration (stages.config.study_variant) from these, then hands the stage a
        # config with the configuration's overrides and the study's probe applied
        return {"study.configs.${key}", "study.prompt", "study.seeds", "study.probe_every", "study.probe_questions"}
    return {"injection"} if re.search(r"vlm-grpo\s+train\s+\S*-inject-", cmd) and "--strategy" not in cmd else set()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_param_a_stage_reads_is_declared_and_no_other(name):
    stage = STAGES[name]
    reads = params_read(import_closure(stage_module(stage))) | cli_reads(stage)
    declared = declared_params(stage)
    missing = sorted(r for r in needed_params(reads) if not satisfied(r, declared))
    assert not missing, f"stage {name} reads {missing} but does not declare them"
    needed = needed_params(reads)
    extra = sorted(d for d in declared - {"profile"} if not any(satisfied(n, {d}) or n.startswith(d + ".")
                                                                for n in needed))
    assert not extra, f"stage {name} declares params {extra} that it never reads"


def test_the_config_is_always_called_cfg():
    """The param scan above finds reads through the name ``cfg``: a Config under another name would hide them."""
    offenders = []
    for path in sorted((REPO / "stages").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arg) and isinstance(node.annotation, ast.Name) and node.annotation.id == "Config":
                if node.arg != "cfg":
                    offenders.append(f"{path.relative_to(REPO)}: {node.arg}")
    assert not offenders


def test_the_scan_finds_reads_direct_and_through_aliases(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def main(cfg):\n    e, b = cfg.eval, cfg.baseline_assess\n    x = e.batch_size\n"
                 "    run(b)\n    return cfg.train.steps, cfg.prompt_styles\n")
    assert params_read([f]) == {"eval.batch_size", "baseline_assess", "train.steps", "prompt_styles"}


def test_the_check_fails_on_a_removed_dep():
    """The same check, on dvc.yaml's train_inject stage with `stages/grpo` removed, names the files left uncovered."""
    stage = dict(STAGES["train_inject"])
    stage["deps"] = [d for d in stage["deps"] if d != "stages/grpo"]
    runs = [p.relative_to(REPO).as_posix() for p in import_closure(stage_module(stage))]
    assert [f for f in runs if not covered(f, code_deps(stage))] == [
        f for f in runs if f.startswith("stages/grpo/")] != []
