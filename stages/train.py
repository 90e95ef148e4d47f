"""Stage ``train@PROMPT-ARM-SEED``: GRPO on CLEVR's training split for one cell of the grid.

Writes the trained model (safetensors + processor), per-step logs through DVCLive, a summary metrics file,
and checkpoints every ``checkpoint_every`` steps.  Killed at any moment, the stage resumes from its last
checkpoint on the next ``dvc repro``; since every random draw of a step is seeded from (seed, step), the
finished logs and model equal those of an uninterrupted run (on CPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from stages.config import Config, ConfigError, parse_cell
from stages.counting.questions import load_counting_split
from stages.io import atomic_dir, read_json, write_json
from stages.training.loop import GRPOTrainer
from stages.vlm import qwen2vl as vlm

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
    "losses/loss": "loss",
    "losses/clip_frac": "clip_frac",
    "losses/kl": "kl",
    "losses/grad_norm": "grad_norm",
}


def rolling(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first steps average what they have)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def steps_to(values: list[float], threshold: float, window: int) -> int | None:
    """First step (1-based count of steps trained) at which the rolling mean reaches ``threshold``."""
    for i, v in enumerate(rolling(values, window)):
        if i + 1 >= window and v >= threshold:
            return i + 1
    return None


def summarize(records: list[dict], cfg: Config, seconds: float) -> dict:
    w, thr = cfg.train.rolling_window, cfg.train.accuracy_threshold
    acc = [r["accuracy"] for r in records]
    dig = [r["digit_rate"] for r in records]
    return {
        "steps": len(records),
        "steps_to_threshold": steps_to(acc, thr, w),
        "steps_to_digit90": steps_to(dig, 0.9, w),
        "accuracy_threshold": thr,
        "final_rolling_accuracy": rolling(acc, w)[-1] if acc else None,
        "final_rolling_digit_rate": rolling(dig, w)[-1] if dig else None,
        "mean_injected_frac": sum(r["injected_frac"] for r in records) / max(1, len(records)),
        "train_seconds": round(seconds, 1),
    }


# --------------------------------------------------------------------------------------------------------
# checkpoints


def fingerprint(cfg: Config, cell: str, base_dir: Path, source_dir: Path = Path(__file__).parent) -> str:
    """What a checkpoint must match to be resumed: the cell, the training params, the base model's bytes and
    the package's source (a run resumed after a code change would mix two trainers)."""
    h = hashlib.sha256()
    h.update(cell.encode())
    h.update(json.dumps(dataclasses.asdict(cfg.train), sort_keys=True).encode())
    h.update((base_dir / "config.json").read_bytes())
    for f in sorted(base_dir.glob("*.safetensors")):
        _hash_file(h, f)
    for f in sorted(source_dir.rglob("*.py")):
        h.update(str(f.relative_to(source_dir)).encode())
        _hash_file(h, f)
    return h.hexdigest()[:16]


def _hash_file(h, path: Path, chunk: int = 1 << 24) -> None:
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)


def save_checkpoint(ckpt_dir: Path, trainer: GRPOTrainer, step: int, records: list[dict], seconds: float,
                    fp: str) -> None:
    with atomic_dir(ckpt_dir) as tmp:
        save_model(trainer.policy, tmp / "model.safetensors")  # handles the tied embedding / lm_head
        torch.save(trainer.opt.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"next_step": step, "records": records, "seconds": seconds,
                                        "fingerprint": fp, "digit_history": list(trainer.digit_history)})


def load_checkpoint(ckpt_dir: Path, trainer: GRPOTrainer, fp: str) -> tuple[int, list[dict], float]:
    """Restore a matching checkpoint; returns (next step, records so far, seconds so far)."""
    state_path = ckpt_dir / "state.json"
    if not state_path.is_file():
        return 0, [], 0.0
    state = read_json(state_path)
    if state.get("fingerprint") != fp:
        log.warning("checkpoint in %s was made with other params, base model or code: starting afresh", ckpt_dir)
        return 0, [], 0.0
    load_model(trainer.policy, ckpt_dir / "model.safetensors", device=str(trainer.acc.device))
    trainer.opt.load_state_dict(torch.load(ckpt_dir / "optimizer.pt", weights_only=True))
    trainer.digit_history.extend(state["digit_history"])
    log.info("resuming from %s at step %d", ckpt_dir, state["next_step"])
    return state["next_step"], state["records"], state["seconds"]


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


def main(cfg: Config, cell: str, base_dir: Path, data_dir: Path, out_dir: Path, ckpt_dir: Path, live_dir: Path,
         metrics_path: Path) -> dict:
    prompt, arm, seed = parse_cell(cell)
    if arm != "none" and arm != cfg.injection:
        log.warning("cell %s uses strategy %s while params.yaml injection is %s", cell, arm, cfg.injection)
    if not (base_dir / "config.json").is_file():
        raise ConfigError(f"{base_dir}: no base model found; run `dvc repro fetch_model` first")
    examples = load_counting_split(data_dir / "clevr" / "train", "clevr")
    torch.manual_seed(seed)
    model, processor = vlm.load_model(base_dir, cfg.train.dtype, "cuda" if torch.cuda.is_available() else "cpu")
    ref_model = vlm.load_model(base_dir, cfg.train.dtype, model.device)[0]
    trainer = GRPOTrainer(model, ref_model, processor, examples, prompt, arm, cfg.train, seed)
    fp = fingerprint(cfg, cell, base_dir)
    start, records, seconds = load_checkpoint(ckpt_dir, trainer, fp)
    main_proc = trainer.acc.is_main_process
    live = _open_live(live_dir, records) if main_proc else None

    bar = tqdm(range(start, cfg.train.steps), initial=start, total=cfg.train.steps, desc=f"train {cell}",
               disable=not main_proc)
    t_last = time.perf_counter()
    for step in bar:
        rec = trainer.train_step(step)
        sample = rec.pop("_sample")
        records.append(rec)
        if live is not None:
            _log_record(live, rec)
        now = time.perf_counter()
        seconds += now - t_last
        t_last = now
        w = cfg.train.rolling_window
        bar.set_postfix(reward=f"{rec['mean_reward']:+.2f}",
                        digits=f"{rolling([r['digit_rate'] for r in records], w)[-1]:.2f}",
                        acc=f"{rolling([r['accuracy'] for r in records], w)[-1]:.2f}",
                        inj=f"{rec['injected_frac']:.2f}")
        if step % 25 == 0:
            log.info("step %d sample: %r", step, sample[:120])
        done = step + 1
        if main_proc and (done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps):
            save_checkpoint(ckpt_dir, trainer, done, records, seconds, fp)

    summary = summarize(records, cfg, seconds)
    if main_proc:
        with atomic_dir(out_dir) as tmp:
            vlm.save_model_dir(trainer.policy, processor, tmp)
        if live is not None:
            live.end()
        write_json(metrics_path, {"cell": cell, "prompt": prompt, "arm": arm, "seed": seed, **summary})
    return summary
