"""Stage ``baseline_assess``: the base model's format compliance per prompt style (blog 001_*, "Why Baseline
Assessment is Critical"), over held-out CLEVR questions, and the chance of any learning signal per group."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from stages.counting.questions import load_counting_split
from stages.counting.scoring import answer_questions, score
from stages.devices import stage_device
from stages.grpo.advantages import signal_chance
from stages.io import atomic_write_text, write_json
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)


def signal_table(p_values: list[float], measured: dict[str, float], group_size: int) -> list[dict]:
    """Rows of the blog's 1-(1-p)^G table: at the blog's p values and at each measured p."""
    rows = [{"source": "blog p", "p": p, "chance": signal_chance(p, group_size)} for p in p_values]
    rows += [{"source": f"measured ({style})", "p": p, "chance": signal_chance(p, group_size)}
             for style, p in measured.items()]
    return rows


def markdown(results: dict[str, dict], rows: list[dict], group_size: int, n: int) -> str:
    lines = [f"## Baseline assessment ({n} held-out CLEVR questions per prompt style)", "",
             "| prompt | digit rate | accuracy | accuracy given digit |", "|---|---|---|---|"]
    for style, m in results.items():
        lines.append(f"| {style} | {m['digit_rate']:.1%} | {m['accuracy']:.1%} | {m['accuracy_given_digit']:.1%} |")
    lines += ["", f"## Chance of any learning signal, 1-(1-p)^G, G = {group_size}", "",
              "| p from | p | chance |", "|---|---|---|"]
    lines += [f"| {r['source']} | {r['p']:.1%} | {r['chance']:.1%} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(cfg: Config, base_dir: Path, data_dir: Path, metrics_path: Path, table_path: Path) -> dict:
    b, e = cfg.baseline_assess, cfg.eval
    heldout = load_counting_split(data_dir / "clevr" / "heldout", "clevr")
    examples = [heldout[i] for i in range(min(b.n_questions, len(heldout)))]
    model, processor = vlm.load_model(base_dir, cfg.eval.dtype, stage_device("baseline_assess", cfg.execution.device, cfg.profile == "blog", cfg.eval.dtype == "bfloat16"))
    results = {}
    for style in cfg.prompt_styles:
        answers = answer_questions(model, processor, examples, style, batch_size=b.batch_size,
                                   max_new_tokens=e.max_new_tokens, do_sample=e.do_sample,
                                   temperature=e.temperature, top_p=e.top_p, seed=e.seed, desc=f"baseline {style}")
        results[style] = score(answers)
        log.info("base model, %s prompt: digit rate %.1f%%, accuracy %.1f%%, accuracy given digit %.1f%%", style,
                 100 * results[style]["digit_rate"], 100 * results[style]["accuracy"],
                 100 * results[style]["accuracy_given_digit"])
    rows = signal_table(b.p_values, {s: m["digit_rate"] for s, m in results.items()}, b.group_size)
    metrics = {"prompts": results, "signal_chance": rows, "n_questions": len(examples),
               "decoding": {"do_sample": e.do_sample, "temperature": e.temperature, "top_p": e.top_p}}
    write_json(metrics_path, metrics)
    atomic_write_text(table_path, markdown(results, rows, b.group_size, len(examples)))
    return metrics
