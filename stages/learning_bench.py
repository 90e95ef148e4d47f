"""``vlm-grpo bench-learning``: how fast ours and TRL's ``GRPOTrainer`` learn, on the same base, data and settings.

Each trainer runs ``train.steps`` GRPO steps of the default prompt without injection, per seed: 4 prompts x G = 8
completions of the CLEVR training split, ``epochs`` clipped passes (TRL: ``num_iterations``, one optimizer step
each), lr ``train.lr`` with a linear warmup over ``train.warmup_frac`` of the run and then constant, epsilon
``train.clip_eps``, beta 0, temperature and top_p as in params, ``train.max_new_tokens`` new tokens, the project's
count reward. Per step we record the training accuracy (share of the B x G completions with reward +1, before any
injection); "steps to 90%" is the first step at which its rolling mean over ``train.rolling_window`` steps reaches
``train.accuracy_threshold`` (:func:`stages.analysis.curves.steps_to_reach`, the definition of the train stage).

The differences that remain outside one update (``tests/test_trl_parity.py`` shows one update is the same) are
listed in ``DIFFERENCES`` and written beside the numbers. A benchmark, not a stage: it writes
``reports/benchmarks.json`` key ``learning_vs_trl`` (other keys kept) and ``reports/learning_vs_trl.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from stages.analysis.curves import rolling_mean, steps_to_reach
from stages.counting.questions import load_counting_split
from stages.io import atomic_write_text, read_json, write_json
from stages.training.loop import GRPOTrainer
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:  # built by the CLI from params.yaml
    from stages.config import Config, TrainParams

log = logging.getLogger(__name__)

# what differs between the two runs besides one update (each kept on purpose; README, "The trainer against TRL")
DIFFERENCES = {
    "warmup": "ours sets the lr once per GRPO step, (step + 1) / warmup_steps, for its 4 passes; TRL's scheduler "
              "moves it every optimizer step from 0, so its 4 passes of step k get (4k + i) / (4 warmup_steps)",
    "weight_decay": "ours decays every weight; Hugging Face's Trainer exempts biases and norm weights "
                    "(at lr 1e-5 x 0.01 a step this is a 1e-7 relative change)",
    "sampling": "ours draws every completion row from its own seeded generator (reproducible across process "
                "counts and resumes); TRL's generate draws from the global torch RNG: the same distribution, other draws",
    "prompt_order": "ours draws 4 training questions per step with a generator seeded by (seed, step); TRL shuffles "
                    "the dataset once per pass over it (RepeatSampler)",
    "constant_steps": "when every group of a step has equal rewards (no gradient), ours skips the optimizer; TRL "
                      "still runs its 4 AdamW steps on zero gradients, whose momentum keeps moving the weights",
}


def learning_params(cfg: Config) -> TrainParams:
    """The settings both trainers run under: the profile's train params, no KL term, no reference forward, fp32."""
    return dataclasses.replace(cfg.train, kl_coef=0.0, kl_log_every=10**9, precision="fp32", sft_coef=0.0,
                               probe_every=0, reward="count", lora_rank=0, gradient_checkpointing=False)


def warmup_steps(train: TrainParams) -> int:
    """Our warmup in GRPO steps (:func:`stages.training.loop.lr_multiplier`)."""
    return int(train.steps * train.warmup_frac)


def train_ours(cfg: Config, base_dir: Path, examples, seed: int, device: str) -> list[float]:
    """Per-step training accuracy of our trainer (default prompt, no injection)."""
    model, processor = vlm.load_model(base_dir, "float32", device)
    train = learning_params(cfg)
    trainer = GRPOTrainer(model, None, processor, examples, "default", "none", train, cfg.injection_params, seed=seed)
    accuracy = []
    for step in tqdm(range(train.steps), desc=f"ours seed {seed}"):
        accuracy.append(trainer.train_step(step)["accuracy"])
    return accuracy


def train_trl(cfg: Config, base_dir: Path, examples, seed: int, device: str) -> list[float]:
    """Per-step training accuracy of TRL's GRPOTrainer under the same settings (one entry per generation)."""
    from transformers import TrainerCallback
    from trl import GRPOTrainer as TRLGRPOTrainer

    from stages.bench import trl_config, trl_dataset, trl_reward

    model, processor = vlm.load_model(base_dir, "float32", device)
    train = learning_params(cfg)
    rewards: list[list[float]] = []  # one list of B x G rewards per generation (= one GRPO step)
    with tempfile.TemporaryDirectory(prefix="trl-learning-") as out:
        args = trl_config(train, processor, out, train.steps, seed=seed, device=device,
                          warmup_steps=train.epochs * warmup_steps(train))
        trainer = TRLGRPOTrainer(model=model, reward_funcs=trl_reward(rewards), args=args,
                                 train_dataset=trl_dataset(examples), processing_class=processor)
        bar = tqdm(total=train.steps, desc=f"trl seed {seed}")

        class Progress(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                bar.n = len(rewards)
                bar.refresh()

        trainer.add_callback(Progress())
        trainer.train()
        bar.close()
    if len(rewards) != train.steps:
        raise RuntimeError(f"TRL generated {len(rewards)} times for {train.steps} GRPO steps")
    return [sum(r == 1.0 for r in step) / len(step) for step in rewards]


def summarize(curves: dict[str, dict[int, list[float]]], train: TrainParams) -> dict:
    """Steps to the threshold per seed, and the final rolling accuracy, for each trainer."""
    w, thr = train.rolling_window, train.accuracy_threshold
    out = {}
    for name, by_seed in curves.items():
        out[name] = [steps_to_reach(acc, thr, w) for acc in by_seed.values()]
        out[f"{name}_final_rolling_accuracy"] = [round(rolling_mean(acc, w)[-1], 4) for acc in by_seed.values()]
    return out


def main(cfg: Config, base_dir: Path, data_dir: Path, seeds: list[int], out_json: Path, out_md: Path,
         command: str = "vlm-grpo bench-learning") -> dict:
    import transformers
    import trl

    device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info("bench-learning on %s: %d seeds x (ours, TRL), %d steps each", device, len(seeds), cfg.train.steps)
    examples = load_counting_split(data_dir / "clevr" / "train", "clevr")
    examples = [examples[i] for i in range(len(examples))]
    train = learning_params(cfg)
    curves: dict[str, dict[int, list[float]]] = {"ours": {}, "trl": {}}
    seconds = {"ours": 0.0, "trl": 0.0}
    for seed in seeds:  # alternate, so both see the same machine state over the run
        for name, run in (("ours", train_ours), ("trl", train_trl)):
            t0 = time.perf_counter()
            curves[name][seed] = run(cfg, base_dir, examples, seed, device)
            seconds[name] += time.perf_counter() - t0
    result = {
        **summarize(curves, train),
        "seeds": list(seeds),
        "settings": {"prompt": "default", "injection": "none", "steps": train.steps,
                     "prompts_per_step": train.prompts_per_step, "group_size": train.group_size,
                     "epochs": train.epochs, "lr": train.lr, "warmup_steps": warmup_steps(train),
                     "clip_eps": train.clip_eps, "beta": 0.0, "temperature": train.temperature, "top_p": train.top_p,
                     "max_new_tokens": train.max_new_tokens, "weight_decay": train.weight_decay,
                     "threshold": train.accuracy_threshold, "rolling_window": train.rolling_window,
                     "base": str(base_dir), "device": device},
        "accuracy_per_step": {name: {str(s): [round(a, 4) for a in acc] for s, acc in by_seed.items()}
                              for name, by_seed in curves.items()},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "differences": DIFFERENCES,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "command": command,
    }
    previous = read_json(out_json) if out_json.is_file() else {}
    write_json(out_json, {**previous, "learning_vs_trl": result})
    atomic_write_text(out_md, markdown(result))
    return result


def _fmt_steps(steps: list[int | None]) -> str:
    return ", ".join("never" if s is None else str(s) for s in steps)


def _median(steps: list[int | None]) -> str:
    reached = [s for s in steps if s is not None]
    return f"{statistics.median(reached):g}" if len(reached) == len(steps) and reached else "-"


def markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        "# Learning speed: ours vs TRL's GRPOTrainer", "",
        f"Command: `{r['command']}`; {s['device']}; versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        "",
        f"Same base (`{s['base']}`), data and settings: default prompt, no injection, {s['steps']} GRPO steps of "
        f"{s['prompts_per_step']} prompts x G = {s['group_size']}, {s['epochs']} passes (one optimizer step each), "
        f"lr {s['lr']:g} after a {s['warmup_steps']}-step linear warmup, eps {s['clip_eps']}, beta 0, "
        f"T = {s['temperature']}, top_p = {s['top_p']}, {s['max_new_tokens']} new tokens. Steps to a rolling-"
        f"{s['rolling_window']} training accuracy of {s['threshold']:.0%}, per seed ({', '.join(map(str, r['seeds']))}):",
        "", "| trainer | steps to threshold | median | final rolling accuracy | seconds |", "|---|---|---|---|---|",
    ]
    for name, label in (("ours", "ours"), ("trl", "TRL GRPOTrainer")):
        lines.append(f"| {label} | {_fmt_steps(r[name])} | {_median(r[name])} | "
                     f"{', '.join(f'{a:.3f}' for a in r[f'{name}_final_rolling_accuracy'])} | {r['seconds'][name]} |")
    lines += ["", "One update is the same (tests/test_trl_parity.py). What still differs:", ""]
    lines += [f"- **{k}**: {v}" for k, v in r["differences"].items()]
    return "\n".join(lines) + "\n"
