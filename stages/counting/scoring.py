"""Scoring a model on counting questions: the shared core of ``baseline_assess`` and the two evaluations.

A question is answered ``eval.samples_per_question`` times (sampled) and, with ``eval.greedy``, once greedily;
each answer is scored with the training reward (+1 correct, 0 wrong number,
-1 no number).  Metrics: number-present (digit) rate, accuracy, accuracy given a number, accuracy per true
count.  Decoding is a parameter (``eval.do_sample``, temperature, top_p); the report states it.
"""

from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm

from stages import prompts
from stages.counting.questions import CountingExample
from stages.grpo.rewards import count_reward, extract_answer
from stages.vlm import qwen2vl as vlm


def answer_questions(model, processor, examples: list[CountingExample], style: str, *, batch_size: int,
                     max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, seed: int,
                     desc: str = "answer") -> pd.DataFrame:
    """One answer per question; a frame with row, question, truth, response, predicted, reward."""
    gen_cfg = vlm.sampling_config(processor.tokenizer, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                  temperature=temperature, top_p=top_p)
    rows = []
    model.eval()
    for start in tqdm(range(0, len(examples), batch_size), desc=desc, leave=False):
        chunk = examples[start : start + batch_size]
        # seeded per batch: the answers do not depend on what ran before (resumable, comparable across models)
        torch.manual_seed(seed * 1_000_003 + start)
        texts = [vlm.chat_prompt(processor, prompts.build_messages(style, ex.question)) for ex in chunk]
        batch = dict(vlm.encode_prompts(processor, [ex.image for ex in chunk], texts))
        gen = vlm.generate(model, processor, batch, gen_cfg, want_logprobs=False)
        for ex, text in zip(chunk, gen.texts, strict=True):
            rows.append({
                "row": ex.row, "question": ex.question, "truth": ex.answer, "response": text,
                "predicted": extract_answer(text), "reward": count_reward(text, ex.answer),
            })
    return pd.DataFrame(rows)


def score(answers: pd.DataFrame) -> dict:
    """Digit rate, accuracy, accuracy given a digit, accuracy per true count."""
    n = len(answers)
    has_digit = answers["reward"] != -1
    correct = answers["reward"] == 1
    per_count = answers.assign(correct=correct).groupby("truth")["correct"].mean()
    return {
        "n": n,
        "digit_rate": float(has_digit.mean()) if n else 0.0,
        "accuracy": float(correct.mean()) if n else 0.0,
        "accuracy_given_digit": float(correct[has_digit].mean()) if has_digit.any() else 0.0,
        "accuracy_by_count": {str(int(k)): float(v) for k, v in per_count.items()},
    }


def per_question(answers: pd.DataFrame) -> dict:
    """Per question (in row order): how many of its sampled answers were right and how many held a number.

    What the report's intervals resample: questions are the unit (their answers are not independent), so a
    bootstrap over questions carries both the sampling noise and the luck of which questions were asked.
    """
    g = answers.assign(correct=answers["reward"] == 1, digit=answers["reward"] != -1).groupby("row", sort=True)
    samples = g.size()
    if samples.nunique() > 1:
        raise ValueError("per_question: questions have different numbers of answers")
    return {"rows": [int(r) for r in samples.index], "samples": int(samples.iloc[0]) if len(samples) else 0,
            "correct": [int(c) for c in g["correct"].sum()], "digit": [int(c) for c in g["digit"].sum()]}


def signal_chance(p: float, group_size: int) -> float:
    """The blog's chance of any learning signal in a group: 1 - (1 - p)^G (at least one scoreable answer)."""
    return 1.0 - (1.0 - p) ** group_size
