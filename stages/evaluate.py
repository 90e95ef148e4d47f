"""Stages ``eval_clevr@CELL`` and ``eval_superclevr@CELL``: a trained cell, or the base model (arm ``base``),
on held-out CLEVR (in-domain) or SuperCLEVR (cross-domain).  Keeps every answer for inspection."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stages.counting.questions import load_counting_split
from stages.counting.scoring import answer_questions, score
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
    model, processor = vlm.load_model(model_dir, cfg.eval.dtype, "cuda" if torch.cuda.is_available() else "cpu")
    answers = answer_questions(model, processor, examples, prompt, batch_size=e.batch_size,
                               max_new_tokens=e.max_new_tokens, do_sample=e.do_sample, temperature=e.temperature,
                               top_p=e.top_p, seed=e.seed, desc=f"eval {dataset} {model_dir.name}")
    metrics = {"dataset": dataset, "prompt": prompt, "model": str(model_dir), **score(answers),
               "decoding": {"do_sample": e.do_sample, "temperature": e.temperature, "top_p": e.top_p,
                            "max_new_tokens": e.max_new_tokens}}
    atomic_write_text(answers_path, answers.to_json(orient="records", lines=True))
    write_json(metrics_path, metrics)
    log.info("%s on %s (%s prompt): accuracy %.1f%%, number present %.1f%%", model_dir.name, dataset, prompt,
             100 * metrics["accuracy"], 100 * metrics["digit_rate"])
    return metrics
