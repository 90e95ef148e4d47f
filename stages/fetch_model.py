"""Stage ``fetch_model``: the base policy as a directory that ``from_pretrained`` loads.

- blog profile: a snapshot of ``Qwen/Qwen2-VL-2B-Instruct`` from the hub.
- mini profile: a tiny Qwen2-VL built offline (tokenizer, processor, model) and pretrained by supervised
  fine-tuning on the mini world so that it has the blog's base behaviour: it can count in both domains;
  under the default prompt it mostly answers in words and gives a digit in a minority of answers (nearly
  always right); under the R1V prompt it answers ``<think>...</think><answer>N</answer>`` with imperfect
  accuracy.  The check at the end measures exactly that, with the sampling used in training.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from stages import prompts
from stages.counting.questions import CLEVR_PROBLEM as CLEVR_QUESTION
from stages.counting.questions import SUPERCLEVR_QUESTIONS, CountingExample
from stages.io import atomic_dir, write_json
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config, FetchModelParams

log = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """The hub model cannot be fetched (offline); the message says what to download and where."""


@dataclass(frozen=True)
class PretrainExample:
    image: Image.Image
    count: int
    domain: str  # "clevr" | "superclevr"


def render_pretrain_pool(p: FetchModelParams, image_size: int, clevr_counts: tuple[int, int],
                         superclevr_counts: tuple[int, int]) -> list[PretrainExample]:
    """The base model's "world knowledge": images of both domains, rendered from seeds disjoint from the
    data stage's (the pretraining never sees an evaluation image)."""
    from stages.scenes.clevr import render_clevr_scene
    from stages.scenes.superclevr import render_superclevr_scene

    rng = np.random.default_rng([p.seed, 7919])
    pool = []
    for _ in tqdm(range(p.pretrain_images), desc="render pretraining images", leave=False):
        if rng.random() < p.superclevr_frac:
            n = int(rng.integers(superclevr_counts[0], superclevr_counts[1] + 1))
            img, _ = render_superclevr_scene(rng, n, image_size)
            pool.append(PretrainExample(img, n, "superclevr"))
        else:
            n = int(rng.integers(clevr_counts[0], clevr_counts[1] + 1))
            img, _ = render_clevr_scene(rng, n, image_size)
            pool.append(PretrainExample(img, n, "clevr"))
    return pool


def pretrain_text(rng: random.Random, ex: PretrainExample, p: FetchModelParams) -> tuple[str, str, str]:
    """One SFT example: (prompt style, question, answer), drawn with the calibrated format mix."""
    if ex.domain == "clevr":
        question, noun = CLEVR_QUESTION, "objects"
    else:
        question, noun = rng.choice(SUPERCLEVR_QUESTIONS), rng.choice(("vehicles", "items"))
    if rng.random() < p.r1v_frac:
        noise = p.r1v_answer_noise if ex.domain == "clevr" else p.superclevr_r1v_answer_noise
        said = _noisy(rng, ex.count, noise)
        return "r1v", question, prompts.r1v_answer(rng, said, noun)
    if rng.random() < default_digit_chance(ex, p):
        unsure = ex.domain == "clevr" and ex.count > p.default_digit_max_count
        said = _noisy(rng, ex.count, p.default_digit_noise_above if unsure else p.default_digit_noise)
        return "default", question, prompts.default_answer(rng, said, noun, digit=True)
    return "default", question, prompts.default_answer(rng, ex.count, noun, digit=False)


def default_digit_chance(ex: PretrainExample, p: FetchModelParams) -> float:
    """How often a default-prompt SFT answer about ``ex`` states its count as a digit (else in words).

    CLEVR: the blog's base answers the default prompt with a digit where it is sure (14.5% of answers, ~95%
    right), though it counts only 68% right when it must give a number (R1V prompt). So its digits are
    selective: ``default_digit_frac`` gives them to scenes of at most ``default_digit_max_count`` objects, and
    ``default_digit_frac_above`` more rarely to larger ones, miscounted ``default_digit_noise_above`` of the
    time: once training makes it answer every question with a digit, the larger counts start out often wrong
    (the blog's phase 2 is learning them), yet within reach of sampling.
    SuperCLEVR: the blog's base gives a number in 40% of its default answers there, 70% of them right, for
    every count, so ``superclevr_default_digit_frac`` applies to every count.
    """
    if ex.domain != "clevr":
        return p.superclevr_default_digit_frac
    return p.default_digit_frac if ex.count <= p.default_digit_max_count else p.default_digit_frac_above


def _noisy(rng: random.Random, count: int, noise: float) -> int:
    """The count, or with probability ``noise`` a miscount by one (never below zero)."""
    if rng.random() >= noise:
        return count
    return count + 1 if count == 0 or rng.random() < 0.5 else count - 1


def tokenizer_corpus(max_count: int) -> list[str]:
    return prompts.corpus_texts(max_count, [CLEVR_QUESTION, *SUPERCLEVR_QUESTIONS])


def lr_at(step: int, total: int, warmup_frac: float) -> float:
    """Linear warmup then linear decay to zero, as a multiplier of the peak learning rate."""
    warmup = max(1, math.ceil(total * warmup_frac))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def sft_loss(model, processor, batch_examples: list[tuple[Image.Image, str, str, str]]) -> torch.Tensor:
    """Mean negative log-likelihood of the answer tokens (prompt tokens are not trained).

    One forward per prompt style: the R1V prompt is about 3x longer than the default one, so padding the
    default rows to its length would spend most of the step on padding.
    """
    total_logp, total_tokens = 0.0, 0
    for style in sorted({ex[1] for ex in batch_examples}):
        rows = [ex for ex in batch_examples if ex[1] == style]
        texts = [vlm.chat_prompt(processor, prompts.build_messages(style, q)) for _, _, q, _ in rows]
        batch = vlm.encode_prompts(processor, [ex[0] for ex in rows], texts)
        ids, mask = vlm.tokenize_completions(processor.tokenizer, [ex[3] for ex in rows])
        logp = vlm.completion_logprobs(model, batch, ids, mask)  # (rows, T)
        total_logp = total_logp + logp.sum()
        total_tokens += int(mask.sum())
    return -(total_logp / total_tokens)


def pretrain(model, processor, pool: list[PretrainExample], p: FetchModelParams) -> list[float]:
    """Supervised fine-tuning on answer tokens; returns the loss per step."""
    rng = random.Random(p.seed)
    torch.manual_seed(p.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=p.pretrain_lr, weight_decay=0.01)
    losses = []
    model.train()
    bar = tqdm(range(p.pretrain_steps), desc="pretrain (SFT)")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = p.pretrain_lr * lr_at(step, p.pretrain_steps, p.pretrain_warmup_frac)
        batch = []
        for ex in rng.sample(pool, min(p.pretrain_batch, len(pool))):
            style, question, answer = pretrain_text(rng, ex, p)
            batch.append((ex.image, style, question, answer))
        loss = sft_loss(model, processor, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
    model.eval()
    return losses


def check_base_behaviour(model, processor, examples: list[CountingExample], styles: list[str],
                         max_new_tokens: int, seed: int) -> dict:
    """Digit rate, accuracy and accuracy given a digit per prompt style, sampling as training does."""
    from stages.counting.scoring import answer_questions, score

    out = {}
    for style in styles:
        answers = answer_questions(model, processor, examples, style, batch_size=len(examples),
                                   max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0,
                                   seed=seed, desc=f"check {style}")
        out[style] = {**score(answers), "example": answers["response"].iloc[0]}
    return out


def build_and_pretrain_mini(cfg: Config, out_dir: Path, metrics_path: Path) -> dict:
    p, d = cfg.fetch_model, cfg.fetch_data
    t0 = time.time()
    max_count = max(d.clevr_max_count, d.superclevr_max_count)
    tokenizer = vlm.build_tokenizer(tokenizer_corpus(max_count), p.vocab_size)
    processor = vlm.VLProcessor(
        image_processor=vlm.build_image_processor(d.image_size), tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    config = vlm.tiny_config(
        tokenizer, text_hidden=p.text_hidden, text_layers=p.text_layers, text_heads=p.text_heads,
        text_kv_heads=p.text_kv_heads, text_intermediate=p.text_intermediate, vision_embed=p.vision_embed,
        vision_depth=p.vision_depth, vision_heads=p.vision_heads, initializer_range=p.initializer_range,
    )
    model = vlm.build_tiny_model(config, p.seed)
    n_params = sum(t.numel() for t in model.parameters())
    log.info("tiny Qwen2-VL: %d tokens in vocabulary, %.2fM parameters", len(tokenizer), n_params / 1e6)

    pool = render_pretrain_pool(p, d.image_size, (d.clevr_min_count, d.clevr_max_count),
                                (d.superclevr_min_count, d.superclevr_max_count))
    losses = pretrain(model, processor, pool, p)

    # a quick look at the base behaviour on fresh CLEVR-like scenes (seeds disjoint from data and pool)
    from stages.scenes.clevr import render_clevr_scene

    rng = np.random.default_rng([p.seed, 104729])
    examples = []
    for _ in range(p.check_questions):
        n = int(rng.integers(d.clevr_min_count, d.clevr_max_count + 1))
        examples.append(CountingExample(render_clevr_scene(rng, n, d.image_size)[0], CLEVR_QUESTION, n, len(examples)))
    check = check_base_behaviour(model, processor, examples, list(cfg.prompt_styles),
                                 p.check_max_new_tokens, p.seed)
    with atomic_dir(out_dir) as tmp:
        vlm.save_model_dir(model, processor, tmp)
    metrics = {
        "profile": "mini",
        "parameters": n_params,
        "vocab_size": len(tokenizer),
        "pretrain_steps": p.pretrain_steps,
        "pretrain_final_loss": float(np.mean(losses[-20:])) if losses else None,
        "seconds": round(time.time() - t0, 1),
        "check": check,
    }
    write_json(metrics_path, metrics)
    return metrics


def snapshot_blog_model(cfg: Config, out_dir: Path, metrics_path: Path) -> dict:
    """The blog's model: a local copy in ``fetch_model.local_dir`` when there is one (``hf download
    --local-dir``, or the offline rehearsal's stand-in), else a snapshot from the hub."""
    hub_id, local = cfg.fetch_model.hub_id, Path(cfg.fetch_model.local_dir)
    if (local / "config.json").is_file():
        with atomic_dir(out_dir) as tmp:
            for f in sorted(local.iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    shutil.copy2(f, tmp / f.name)
        metrics = {"profile": "blog", "hub_id": hub_id, "source": str(local)}
        write_json(metrics_path, metrics)
        log.info("copied %s from %s", hub_id, local)
        return metrics
    try:
        from huggingface_hub import snapshot_download

        with atomic_dir(out_dir) as tmp:
            snapshot_download(hub_id, local_dir=tmp, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt"])
    except KeyboardInterrupt:
        raise
    except Exception as err:  # offline, hub error, auth: the same remedy
        raise ModelUnavailableError(
            f"cannot download {hub_id} from the Hugging Face hub ({type(err).__name__}): on a machine with "
            f"network run `hf download {hub_id} --local-dir {local}` and copy {local}/ here"
        ) from None
    metrics = {"profile": "blog", "hub_id": hub_id}
    write_json(metrics_path, metrics)
    return metrics


def main(cfg: Config, out_dir: Path, metrics_path: Path) -> dict:
    if cfg.profile == "blog":
        log.info("fetch_model: device none (the blog profile copies the model's files; no weights are computed)")
        return snapshot_blog_model(cfg, out_dir, metrics_path)
    # the mini base is built and pretrained on the CPU whatever execution.device says: its bytes are the premise of
    # every mini result, and a GPU's kernels would make another base
    log.info("fetch_model: device cpu (%d threads): the mini base is pretrained on the CPU", torch.get_num_threads())
    return build_and_pretrain_mini(cfg, out_dir, metrics_path)
