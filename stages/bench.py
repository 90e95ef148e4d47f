"""``vlm-grpo bench``: one GRPO step of ours against TRL's ``GRPOTrainer``, same model, data and settings.

A "step" is the blog's: 4 prompts x G = 8 completions (max 50 new tokens), then 4 clipped passes over them
(TRL: ``num_iterations=4``, so one of our steps equals one TRL generation plus 4 TRL optimizer steps),
epsilon 0.2, beta 0 (no reference model), temperature 1.0, fp32.  The two run alternately in one process
(a TRL step, then one of ours, ...: both see the same machine state), after a warm-up step each; the report
gives medians, min, max, the ratio, our step's breakdown by phase, and the peak memory of each, measured
alone in a child process (RSS on CPU, peak allocated on GPU).  A benchmark, not a test.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stages.counting.questions import load_counting_split
from stages.grpo.rewards import count_reward
from stages.io import atomic_write_text, read_json, write_json
from stages.training.loop import GRPOTrainer
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

# the model's own compute; everything else in a step is overhead
COMPUTE_PHASES = ("generation", "injected_forward", "reference_forward", "train_forward_backward", "optimizer")


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM), so each block is measured alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_memory_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return _peak_rss_mib()


def _reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _reset_peak_rss()


def _bench_params(cfg: Config):
    return dataclasses.replace(cfg.train, prompts_per_step=4, group_size=8, epochs=4, clip_eps=0.2, kl_coef=0.0,
                               temperature=1.0, top_p=1.0, max_new_tokens=50, kl_log_every=10**9,
                               warmup_frac=0.0, precision="fp32")


class OursRunner:
    def __init__(self, cfg: Config, base_dir: Path, examples, device: str):
        model, processor = vlm.load_model(base_dir, "float32", device)
        self.trainer = GRPOTrainer(model, None, processor, examples, "default", "none", _bench_params(cfg),
                                   cfg.injection_params, seed=0)
        self.step = 0

    def run(self) -> tuple[float, dict[str, float]]:
        self.trainer.timer.reset()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        rec = self.trainer.train_step(self.step)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        total = time.perf_counter() - t0
        self.step += 1
        return total, {k.removeprefix("time_"): v for k, v in rec.items() if k.startswith("time_")}


def trl_dataset(examples):
    """The questions in TRL's conversational multimodal layout: the default prompt (the image, then the question)."""
    import datasets

    rows = {"prompt": [], "image": [], "truth": []}
    for ex in examples:
        rows["prompt"].append([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ex.question}]}])
        rows["image"].append(ex.image)
        rows["truth"].append(ex.answer)
    return datasets.Dataset.from_dict(rows)


def trl_reward(record: list[list[float]] | None = None):
    """The project's count reward as a TRL reward function; each call's rewards (one GRPO step) go to ``record``."""

    def reward(completions, truth, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        out = [float(count_reward(t, n)) for t, n in zip(texts, truth, strict=True)]
        if record is not None:
            record.append(out)
        return out

    return reward


def trl_config(train, processor, out_dir: str, steps: int, seed: int, device: str, warmup_steps: int = 0):
    """TRL's ``GRPOConfig`` for ``steps`` of our GRPO steps with our settings: one TRL generation of B x G
    completions, then ``epochs`` optimizer steps on it (``num_iterations``), a constant learning rate after a
    linear warmup of ``warmup_steps`` optimizer steps, the special tokens suppressed as our sampler does."""
    from trl import GRPOConfig

    tok = processor.tokenizer
    ends = set(vlm.end_token_ids(tok))
    suppress = [i for i in (tok.convert_tokens_to_ids(t) for t in vlm.SPECIAL_TOKENS) if i not in ends]
    return GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=train.prompts_per_step * train.group_size,
        num_generations=train.group_size, steps_per_generation=1, num_iterations=train.epochs,
        max_completion_length=train.max_new_tokens, temperature=train.temperature, top_p=train.top_p, top_k=0,
        beta=train.kl_coef, epsilon=train.clip_eps, learning_rate=train.lr, weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm, lr_scheduler_type="constant_with_warmup", warmup_steps=warmup_steps,
        loss_type="grpo", bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=device == "cpu",
        report_to=[], logging_steps=10**6, save_strategy="no", max_steps=train.epochs * steps, seed=seed,
        generation_kwargs={"suppress_tokens": suppress, "eos_token_id": sorted(ends)},
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )


class TRLRunner:
    """TRL's GRPOTrainer on the same model and questions; ``run`` times one generation + 4 optimizer steps."""

    def __init__(self, cfg: Config, base_dir: Path, examples, device: str, steps: int, between=None):
        """``between()`` runs after every reference step (4 optimizer steps), outside TRL's timed steps."""
        from trl import GRPOTrainer as TRLGRPOTrainer

        model, processor = vlm.load_model(base_dir, "float32", device)
        self.out = tempfile.mkdtemp(prefix="trl-bench-")
        args = trl_config(_bench_params(cfg), processor, self.out, steps, seed=0, device=device)
        self.trainer = TRLGRPOTrainer(model=model, reward_funcs=trl_reward(), args=args, train_dataset=trl_dataset(examples),
                                      processing_class=processor)
        from transformers import TrainerCallback

        times: list[float] = []

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times.append(time.perf_counter())

            def on_step_end(self, args, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times.append(time.perf_counter())
                if between is not None and state.global_step % 4 == 0:
                    between()

        self.times = times
        self.trainer.add_callback(Clock())

    def train_all(self) -> list[float]:
        """Train ``4 * steps`` optimizer steps; returns seconds per reference step (4 optimizer steps each)."""
        self.trainer.train()
        per_opt = [self.times[i + 1] - self.times[i] for i in range(0, len(self.times) - 1, 2)]
        return [sum(per_opt[i : i + 4]) for i in range(0, len(per_opt) - 3, 4)]


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def _examples(data_dir: Path) -> list:
    split = load_counting_split(data_dir / "clevr" / "train", "clevr")
    return [split[i] for i in range(min(256, len(split)))]


def peak_memory_alone(which: str, cfg: Config, base_dir: Path, data_dir: Path) -> float:
    """Peak memory (MiB) of a warm-up step plus one timed step of ``which`` ("ours" | "trl") in THIS process;
    called in a fresh child process so that each figure is its trainer's alone."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    examples = _examples(data_dir)
    _reset_peak_memory()
    if which == "ours":
        runner = OursRunner(cfg, base_dir, examples, device)
        runner.run()
        runner.run()
    else:
        TRLRunner(cfg, base_dir, examples, device, steps=2).train_all()
    return _peak_memory_mib()


def _peak_memory_in_child(which: str, params: Path, base_dir: Path, data_dir: Path) -> float:
    code = ("import sys; from pathlib import Path; from stages.config import load_config; from stages import bench; "
            "print(bench.peak_memory_alone(sys.argv[1], load_config(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])))")
    out = subprocess.run([sys.executable, "-c", code, which, str(params), str(base_dir), str(data_dir)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(cfg: Config, base_dir: Path, data_dir: Path, repeats: int, out_json: Path, out_md: Path,
         with_trl: bool = True, params_path: Path = Path("params.yaml"), command: str = "vlm-grpo bench") -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    examples = _examples(data_dir)
    ours = OursRunner(cfg, base_dir, examples, device)
    ours_times, phases = [], []

    def ours_step() -> None:
        t, ph = ours.run()
        ours_times.append(t)
        phases.append(ph)

    trl_steps: list[float] = []
    if with_trl:  # TRL step, ours, TRL step, ours, ...: the first of each is the warm-up
        trl_steps = TRLRunner(cfg, base_dir, examples, device, steps=repeats + 1, between=ours_step).train_all()[1:]
    else:
        for _ in range(repeats + 1):
            ours_step()
    ours_times, phases = ours_times[1:], phases[1:]

    result: dict = {"ours_s_per_step": statistics.median(ours_times), "ours": _stats(ours_times)}
    breakdown = {k: statistics.median([p.get(k, 0.0) for p in phases]) for k in COMPUTE_PHASES}
    total = result["ours_s_per_step"]
    breakdown["other"] = max(0.0, total - sum(breakdown.values()))
    result["ours_breakdown_s"] = breakdown
    result["overhead_frac"] = breakdown["other"] / total
    result["ours_peak_mib"] = round(_peak_memory_in_child("ours", params_path, base_dir, data_dir), 1)
    if with_trl:
        result["trl_s_per_step"] = statistics.median(trl_steps)
        result["trl"] = _stats(trl_steps)
        result["ratio"] = result["ours_s_per_step"] / result["trl_s_per_step"]
        result["trl_peak_mib"] = round(_peak_memory_in_child("trl", params_path, base_dir, data_dir), 1)
    import transformers

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__}
    if with_trl:
        import trl as trl_pkg

        versions["trl"] = trl_pkg.__version__
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
    previous = read_json(out_json) if out_json.is_file() else {}
    out = {**previous, device: result, "machine": machine, "versions": versions, "command": command}
    write_json(out_json, out)
    atomic_write_text(out_md, markdown(out, device))
    return out


def markdown(out: dict, device: str) -> str:
    r = out[device]
    m = out["machine"]
    lines = ["# GRPO step benchmark: ours vs TRL", "",
             f"Machine: {m['platform']} ({m['processor']}, {m['cpus']} CPUs, torch threads {m['threads']}"
             + (f", {m['gpu']}" if m.get("gpu") else "") + "); versions: "
             + ", ".join(f"{k} {v}" for k, v in out["versions"].items()), "",
             f"Command: `{out['command']}` (4 prompts x G=8, 50 new tokens, 4 GRPO epochs, eps 0.2, beta 0, T=1, "
             "fp32).",
             "", "| | median s/step | min | max | n |", "|---|---|---|---|---|",
             f"| ours | {r['ours']['median']:.3f} | {r['ours']['min']:.3f} | {r['ours']['max']:.3f} | {r['ours']['n']} |"]
    if "trl" in r:
        lines.append(f"| TRL GRPOTrainer | {r['trl']['median']:.3f} | {r['trl']['min']:.3f} | {r['trl']['max']:.3f} | "
                     f"{r['trl']['n']} |")
        lines += ["", f"Ratio ours / TRL: **{r['ratio']:.2f}**"]
    lines += ["", "Our step by phase (median seconds):", "", "| phase | s | share |", "|---|---|---|"]
    total = r["ours_s_per_step"]
    lines += [f"| {k} | {v:.3f} | {v / total:.0%} |" for k, v in r["ours_breakdown_s"].items()]
    unit = "peak allocated" if device == "cuda" else "peak RSS"
    lines += ["", f"Overhead (everything outside generation, forwards, backwards and the optimizer): "
              f"**{r['overhead_frac']:.1%}** of a step.",
              "", f"Memory ({unit}, each measured alone in a child process): ours {r['ours_peak_mib']} MiB"
              + (f"; TRL {r['trl_peak_mib']} MiB" if "trl_peak_mib" in r else ""),
              "", "Ours and TRL alternate in one process, step by step (a warm-up step of each first)."]
    return "\n".join(lines) + "\n"
