"""Stage ``baseline_assess``: the base model's format compliance per prompt style (blog 001_*, "Why Baseline
Assessment is Critical"), over held-out CLEVR questions, and the chance of any learning signal per group.

It also measures the blog's own account of its base model on both domains (``account`` in the metrics; see
:mod:`stages.counting.base_account`): how often it answers with just a number, the log-probability of the text
that injection inserts, whether its answers describe the scene and count in words, how long they are and how
many the token limit cuts, its accuracy by true count, and the counts and phrasings each dataset asks for. The
blog profile computes the same numbers for Qwen2-VL-2B-Instruct, so the mini world's premises can be checked
against the real model's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from stages import prompts
from stages.counting import base_account
from stages.counting.questions import CountingExample, load_counting_split
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


def injected_logprobs(model, processor, examples: list[CountingExample], style: str, batch_size: int) -> list[float]:
    """log p(injected completion + <|im_end|> | prompt) under ``model``, in nats, one per question: how far the
    text that guidance injection inserts (:func:`stages.prompts.injected_completion`, the true count) lies from
    what the model would write by itself."""
    tok = processor.tokenizer
    out: list[float] = []
    model.eval()
    for start in tqdm(range(0, len(examples), batch_size), desc=f"log p injected {style}", leave=False):
        chunk = examples[start : start + batch_size]
        texts = [vlm.chat_prompt(processor, prompts.build_messages(style, ex.question)) for ex in chunk]
        batch = dict(vlm.encode_prompts(processor, [ex.image for ex in chunk], texts))
        ids, mask = vlm.tokenize_completions(tok, [prompts.injected_completion(style, ex.answer) for ex in chunk])
        with torch.no_grad():
            logp = vlm.completion_logprobs(model, batch, ids, mask)  # (B, T), zero past each text's end
        out += [float(x) for x in logp.sum(dim=1).cpu()]
    return out


def answer_tokens(tokenizer, responses: list[str]) -> list[int]:
    """Each answer's length in tokens, re-tokenized from its decoded text (the generator's own count can differ
    by a token where BPE merges differently; ``<|im_end|>`` is not counted)."""
    return [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses]


def answer(model, processor, examples: list[CountingExample], style: str, cfg: Config, desc: str):
    """One answer per question, decoded as the evaluations decode (params ``eval``)."""
    b, e = cfg.baseline_assess, cfg.eval
    return answer_questions(model, processor, examples, style, batch_size=b.batch_size,
                            max_new_tokens=e.max_new_tokens, do_sample=e.do_sample, temperature=e.temperature,
                            top_p=e.top_p, seed=e.seed, desc=desc)


def account(model, processor, splits: dict[str, list[CountingExample]], answers: dict[str, dict], cfg: Config) -> dict:
    """The blog's account of its base model, per domain and prompt style (``answers[domain][style]``: one
    answer per question of ``splits[domain]``), and each dataset's counts and phrasings."""
    max_new_tokens = cfg.eval.max_new_tokens
    out: dict = {"data": {name: base_account.data_account([ex.answer for ex in exs], [ex.question for ex in exs])
                          for name, exs in splits.items()}}
    for name, exs in splits.items():
        out[name] = {}
        for style, frame in answers[name].items():
            m = base_account.answer_account(frame, answer_tokens(processor.tokenizer, list(frame["response"])),
                                            max_new_tokens)
            m["injected_logprob"] = base_account.logprob_account(
                injected_logprobs(model, processor, exs, style, cfg.baseline_assess.batch_size))
            m["digit_rate"] = score(frame)["digit_rate"]
            out[name][style] = m
            log.info("base model, %s, %s prompt: just a number %.1f%%, describes the scene %.1f%%, median %d tokens "
                     "(%.1f%% cut at %d), log p(injected) %.2f nats", name, style, 100 * m["bare_number_share"],
                     100 * m["describes_scene_share"], m["tokens_median"], 100 * m["cut_share"], max_new_tokens,
                     m["injected_logprob"]["mean"])
    return out


def main(cfg: Config, base_dir: Path, data_dir: Path, metrics_path: Path, table_path: Path) -> dict:
    b, e = cfg.baseline_assess, cfg.eval
    # the machine first: a blog-profile run on a box without a usable GPU stops here, whatever else is missing
    device = stage_device("baseline_assess", cfg.execution.device, cfg.profile == "blog", e.dtype == "bfloat16")
    heldout = load_counting_split(data_dir / "clevr" / "heldout", "clevr")
    examples = [heldout[i] for i in range(min(b.n_questions, len(heldout)))]
    superclevr = load_counting_split(data_dir / "superclevr", "superclevr")
    superclevr_examples = [superclevr[i] for i in range(min(b.n_questions, len(superclevr)))]
    model, processor = vlm.load_model(base_dir, e.dtype, device)
    splits = {"clevr": examples, "superclevr": superclevr_examples}
    answers = {name: {style: answer(model, processor, exs, style, cfg, f"baseline {name} {style}")
                      for style in cfg.prompt_styles} for name, exs in splits.items()}
    results = {}
    for style, frame in answers["clevr"].items():
        results[style] = score(frame)
        log.info("base model, %s prompt: digit rate %.1f%%, accuracy %.1f%%, accuracy given digit %.1f%%", style,
                 100 * results[style]["digit_rate"], 100 * results[style]["accuracy"],
                 100 * results[style]["accuracy_given_digit"])
    rows = signal_table(b.p_values, {s: m["digit_rate"] for s, m in results.items()}, b.group_size)
    accounts = account(model, processor, splits, answers, cfg)
    metrics = {"prompts": results, "signal_chance": rows, "n_questions": len(examples), "account": accounts,
               "decoding": {"do_sample": e.do_sample, "temperature": e.temperature, "top_p": e.top_p}}
    write_json(metrics_path, metrics)
    atomic_write_text(table_path, markdown(results, rows, b.group_size, len(examples)))
    return metrics
