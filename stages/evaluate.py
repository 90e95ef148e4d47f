"""Stages ``eval_clevr@CELL`` and ``eval_superclevr@CELL``: a trained cell, or the base model (arm ``base``),
on held-out CLEVR (in-domain) or SuperCLEVR (cross-domain).  Keeps every answer for inspection.

Each question is answered ``eval.samples_per_question`` times with the training's sampling (the headline
accuracy, as the blog evaluates) and, with ``eval.greedy``, once greedily (an accuracy without sampling
noise).  ``per_question`` in the metrics (correct / numbered answers per question) is what the report's
confidence intervals resample.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from stages.counting.questions import load_counting_split
from stages.counting.scoring import answer_questions, per_question, score
from stages.devices import stage_device
from stages.io import atomic_write_text, write_json
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)


def main(cfg: Config, dataset: str, prompt: str, model_dir: Path, data_dir: Path, metrics_path: Path,
         answers_path: Path) -> dict:
    e = cfg.eval
    if dataset == "clevr":
        split = load_counting_split(data_dir / "clevr" / "heldout", "clevr")
        examples = [split[i] for i in range(min(e.clevr_questions, len(split)))]
    else:
        split = load_counting_split(data_dir / "superclevr", "superclevr")
        examples = [split[i] for i in range(len(split))]
    model, processor = vlm.load_model(model_dir, cfg.eval.dtype, stage_device("eval", cfg.execution.device, cfg.profile == "blog", cfg.eval.dtype == "bfloat16"))
    decode = dict(batch_size=e.batch_size, max_new_tokens=e.max_new_tokens, temperature=e.temperature, top_p=e.top_p)
    # sample k is seeded with eval.seed + k: sample 0 is the single-sample evaluation, whatever k is
    sampled = pd.concat([
        answer_questions(model, processor, examples, prompt, do_sample=e.do_sample, seed=e.seed + k,
                         desc=f"eval {dataset} {model_dir.name}" + (f" (sample {k + 1}/{e.samples_per_question})"
                                                                      if e.samples_per_question > 1 else ""),
                         **decode).assign(decoding="sampled" if e.do_sample else "greedy", sample=k)
        for k in range(e.samples_per_question if e.do_sample else 1)], ignore_index=True)
    greedy = None
    if e.greedy and e.do_sample:
        greedy = answer_questions(model, processor, examples, prompt, do_sample=False, seed=e.seed,
                                  desc=f"eval {dataset} {model_dir.name} (greedy)", **decode
                                  ).assign(decoding="greedy", sample=0)
    metrics = {"dataset": dataset, "prompt": prompt, "model": str(model_dir), **score(sampled),
               "per_question": per_question(sampled),
               "greedy": {k: v for k, v in score(greedy).items() if k != "accuracy_by_count"} if greedy is not None
               else None,
               "decoding": {"do_sample": e.do_sample, "temperature": e.temperature, "top_p": e.top_p,
                            "max_new_tokens": e.max_new_tokens, "samples_per_question": e.samples_per_question}}
    answers = pd.concat([sampled, greedy], ignore_index=True) if greedy is not None else sampled
    atomic_write_text(answers_path, answers.to_json(orient="records", lines=True))
    write_json(metrics_path, metrics)
    log.info("%s on %s (%s prompt): accuracy %.1f%%, number present %.1f%%%s", model_dir.name, dataset, prompt,
             100 * metrics["accuracy"], 100 * metrics["digit_rate"],
             f"; greedy accuracy {100 * metrics['greedy']['accuracy']:.1f}%" if greedy is not None else "")
    return metrics
