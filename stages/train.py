"""Stages ``train_none@PROMPT-SEED`` and ``train_inject@PROMPT-SEED``: GRPO on CLEVR's training split for one cell.

Writes the trained model (safetensors + processor), per-step logs through DVCLive, a summary metrics file,
and a checkpoint every ``execution.checkpoint_every`` steps (only the newest is kept, and it is deleted once the
cell's outputs are written).  Killed at any moment, the stage resumes from its last checkpoint on the next
``dvc repro``; since every random draw of a step is seeded from (seed, step), the finished logs and model equal
those of an uninterrupted run (on CPU). Under several processes rank 0 alone reads the checkpoint and sends it to
the others, so ranks without a shared filesystem resume from the same one. Under LoRA (``train.lora_rank > 0``) the
checkpoints hold the adapters and the model written has them merged in: a plain Qwen2-VL, as a full fine-tune's.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from stages.analysis.curves import rolling_mean, steps_to_reach
from stages.cells import cell_strategy, parse_cell
from stages.counting.questions import load_counting_split
from stages.devices import stage_device
from stages.io import InputError, atomic_dir, write_json
from stages.training.checkpoints import delete_checkpoint, fingerprint, resume_checkpoint, save_checkpoint
from stages.training.loop import GRPOTrainer
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)

# per-step record keys logged to DVCLive (namespaced as in cleanrl: charts/..., losses/...)
LIVE_KEYS = {
    "charts/mean_reward": "mean_reward",
    "charts/policy_reward": "policy_reward",
    "charts/digit_rate": "digit_rate",
    "charts/accuracy": "accuracy",
    "charts/injected_frac": "injected_frac",
    "charts/frac_reward_zero_std": "frac_reward_zero_std",
    "charts/completion_length": "completion_length",
    "charts/lr": "lr",
    "charts/seconds_per_step": "seconds_per_step",
    "charts/skipped_update": "skipped_update",
    "losses/loss": "loss",
    "losses/clip_frac": "clip_frac",
    "losses/kl": "kl",
    "losses/grad_norm": "grad_norm",
    "losses/ratio_mean": "ratio_mean",
    "losses/sft_weight": "sft_weight",  # train.sft_coef > 0 only (CHORD's supervised term)
    "losses/sft_loss": "sft_loss",
    "probe/superclevr_digit_rate": "probe_digit_rate",  # every train.probe_every steps (NaN, not logged, between)
    "probe/superclevr_accuracy": "probe_accuracy",
    # where a step's time goes (stages.training.loop.PhaseTimer) and, on a GPU, its peak memory
    "time/generation_s": "time_generation",
    "time/injected_forward_s": "time_injected_forward",
    "time/reference_forward_s": "time_reference_forward",
    "time/train_forward_backward_s": "time_train_forward_backward",
    "time/optimizer_s": "time_optimizer",
    "time/checkpoint_s": "time_checkpoint",
    "memory/peak_gib": "peak_memory_gib",
}


def summarize(records: list[dict], cfg: Config, seconds: float) -> dict:
    w, thr = cfg.train.rolling_window, cfg.train.accuracy_threshold
    acc = [r["accuracy"] for r in records]
    dig = [r["digit_rate"] for r in records]
    return {
        "steps": len(records),
        "steps_to_threshold": steps_to_reach(acc, thr, w),
        "steps_to_digit90": steps_to_reach(dig, 0.9, w),
        "accuracy_threshold": thr,
        "final_rolling_accuracy": rolling_mean(acc, w)[-1] if acc else None,
        "final_rolling_digit_rate": rolling_mean(dig, w)[-1] if dig else None,
        "mean_injected_frac": sum(r["injected_frac"] for r in records) / max(1, len(records)),
        "train_seconds": round(seconds, 1),
    }


# --------------------------------------------------------------------------------------------------------


def _open_live(live_dir: Path, records: list[dict]):
    """A fresh DVCLive dir holding exactly ``records`` (replayed after a resume, so no step is logged twice)."""
    from dvclive import Live

    shutil.rmtree(live_dir, ignore_errors=True)
    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    for rec in records:
        _log_record(live, rec)
    return live


def _log_record(live, rec: dict) -> None:
    live.step = rec["step"]
    for name, key in LIVE_KEYS.items():
        if key in rec and rec[key] == rec[key]:  # skip NaN (e.g. KL on steps without a reference forward)
            live.log_metric(name, rec[key])
    live.next_step()


# per-step record keys that measure the machine (seconds, memory), not the training: two equal runs differ there
MACHINE_KEYS = tuple(key for name, key in LIVE_KEYS.items() if name.startswith(("time/", "memory/"))) + (
    "seconds_per_step",)


def read_records(live_dir: Path, timings: bool = True) -> list[dict]:
    """The per-step records a train stage logged to ``live_dir`` (DVCLive's TSVs), keyed as the trainer keys them:
    what a finished cell leaves once its checkpoint is gone. A key a step did not log is absent from its record.
    ``timings=False`` leaves out the machine's measurements (:data:`MACHINE_KEYS`), to compare two runs."""
    import pandas as pd

    by_step: dict[int, dict] = {}
    for name, key in LIVE_KEYS.items():
        if not timings and key in MACHINE_KEYS:
            continue
        tsv = live_dir / "plots" / "metrics" / f"{name}.tsv"
        if tsv.is_file():
            for step, value in pd.read_csv(tsv, sep="\t").set_index("step")[name.split("/")[-1]].items():
                by_step.setdefault(int(step), {"step": int(step)})[key] = float(value)
    return [by_step[s] for s in sorted(by_step)]


def load_probe(cfg: Config, data_dir: Path) -> list:
    """The fixed cross-domain probe: the first ``train.probe_questions`` SuperCLEVR questions ([] when off)."""
    if cfg.train.probe_every == 0:
        return []
    split = load_counting_split(data_dir / "superclevr", "superclevr")
    return [split[i] for i in range(min(cfg.train.probe_questions, len(split)))]


def probe(trainer: GRPOTrainer, questions: list, cfg: Config, step: int) -> dict[str, float]:
    """Digit rate and accuracy of the policy on the probe, sampled as in training with a seed fixed by the step.

    Runs in a forked RNG: the training's own draws are seeded per step and row, and stay untouched.
    """
    from stages.counting.scoring import answer_questions, score

    t = cfg.train
    was_training = trainer.policy.training
    with torch.random.fork_rng(devices=[]), trainer.compute():
        answers = answer_questions(trainer.policy, trainer.processor, questions, trainer.style,
                                   batch_size=len(questions), max_new_tokens=t.max_new_tokens, do_sample=True,
                                   temperature=t.temperature, top_p=t.top_p, seed=step, desc="probe superclevr")
    trainer.policy.train(was_training)
    m = score(answers)
    return {"probe_digit_rate": m["digit_rate"], "probe_accuracy": m["accuracy"]}


def trainer_params(cfg: Config) -> dict:
    """The params the trainer reads (what a checkpoint must have been made with)."""
    return {"train": dataclasses.asdict(cfg.train), "injection_params": dataclasses.asdict(cfg.injection_params)}


def main(cfg: Config, cell: str, strategy: str, base_dir: Path, data_dir: Path, out_dir: Path, ckpt_dir: Path,
         live_dir: Path, metrics_path: Path) -> dict:
    """Train one cell: its role (none / inject) from the name, the strategy of an inject cell from the command
    line (dvc.yaml passes params `injection` there), never read from params here: a `none` cell must not
    depend on `injection`."""
    prompt, role, seed = parse_cell(cell)
    strategy = cell_strategy(role, strategy)
    if not (base_dir / "config.json").is_file():
        raise InputError(f"{base_dir}: no base model found; run `dvc repro fetch_model` first")
    examples = load_counting_split(data_dir / "clevr" / "train", "clevr")
    probe_questions = load_probe(cfg, data_dir)
    torch.manual_seed(seed)
    # this process's device, bound before any CUDA call (cuda:LOCAL_RANK under a launcher). Not accelerate's
    # PartialState: a process group made before from_pretrained makes save_pretrained expect every rank and write
    # no weights from rank 0 alone
    device = stage_device("train", cfg.execution.device, cfg.profile == "blog", cfg.train.precision == "bf16-mixed")
    # fp32 master weights whatever train.precision says; bf16-mixed computes in bf16 under autocast
    model, processor = vlm.load_model(base_dir, "float32", device)
    lora = cfg.train.lora_rank > 0
    ref_dtype = "bfloat16" if cfg.train.precision == "bf16-mixed" else "float32"  # frozen: bf16 weights are fine
    # under LoRA the reference is the policy with its adapters off: no second copy of the weights
    ref_model = None if lora else vlm.load_model(base_dir, ref_dtype, model.device)[0]
    from accelerate import Accelerator

    trainer = GRPOTrainer(model, ref_model, processor, examples, prompt, strategy, cfg.train, cfg.injection_params,
                          seed, accelerator=Accelerator(cpu=device == "cpu"))
    fp = fingerprint({**trainer_params(cfg), "strategy": strategy}, cell, base_dir)
    state = resume_checkpoint(ckpt_dir, trainer.policy, trainer.opt, fp, trainer.acc.device, trainable_only=lora) or {}
    start, records, seconds = state.get("next_step", 0), state.get("records", []), state.get("seconds", 0.0)
    trainer.digit_history.extend(state.get("digit_history", []))
    main_proc = trainer.acc.is_main_process
    live = _open_live(live_dir, records) if main_proc else None

    bar = tqdm(range(start, cfg.train.steps), initial=start, total=cfg.train.steps, desc=f"train {cell}",
               disable=not main_proc)
    t_last = time.perf_counter()
    w = cfg.train.rolling_window
    checkpoint_seconds = None  # the last checkpoint's save time, logged with the step after it
    for step in bar:
        rec = trainer.train_step(step)
        sample = rec.pop("_sample")
        if checkpoint_seconds is not None:
            rec["time_checkpoint"], checkpoint_seconds = checkpoint_seconds, None
        if probe_questions and main_proc and (step + 1) % cfg.train.probe_every == 0:
            rec.update(probe(trainer, probe_questions, cfg, step))
        records.append(rec)
        if live is not None:
            _log_record(live, rec)
        now = time.perf_counter()
        seconds += now - t_last
        t_last = now
        bar.set_postfix(reward=f"{rec['mean_reward']:+.2f}",
                        digits=f"{rolling_mean([r['digit_rate'] for r in records[-w:]], w)[-1]:.2f}",
                        acc=f"{rolling_mean([r['accuracy'] for r in records[-w:]], w)[-1]:.2f}",
                        inj=f"{rec['injected_frac']:.2f}")
        if step % 25 == 0:
            log.info("step %d sample: %r", step, sample[:120])
        done = step + 1
        if main_proc and done % cfg.execution.checkpoint_every == 0 and done < cfg.train.steps:
            t_ckpt = time.perf_counter()
            save_checkpoint(ckpt_dir, trainer.policy, trainer.opt,
                            {"next_step": done, "records": records, "seconds": seconds, "fingerprint": fp,
                             "digit_history": list(trainer.digit_history)}, trainable_only=lora)
            checkpoint_seconds = time.perf_counter() - t_ckpt

    summary = summarize(records, cfg, seconds)
    if main_proc:
        final = trainer.policy
        if lora:  # the adapters merged into the base weights: a plain model, read by the evals like any other
            from stages.training.lora import merged_policy

            final = merged_policy(final)
        # stored as the base was (the hub's 2B: bf16, 4.4 GB instead of 8.8; the mini base: fp32, unchanged)
        final = final.to(getattr(torch, vlm.stored_dtype(base_dir)))
        with atomic_dir(out_dir) as tmp:
            vlm.save_model_dir(final, processor, tmp)
        if live is not None:
            live.end()
        write_json(metrics_path, {"cell": cell, "prompt": prompt, "arm": role, "strategy": strategy, "seed": seed,
                                   **summary})
        delete_checkpoint(ckpt_dir)  # the outputs are complete: the (large) checkpoint has served
    return summary
