"""``vlm-grpo gpu-check``: a self-test of a GPU box before the real study, in at most ~5 minutes, nothing to download.

The model under test is the downloaded Qwen2-VL-2B-Instruct when ``--model`` holds one, else a model of its
published shape (every width, the 151,936-token vocabulary, 28 text layers, 32 vision blocks) with random weights,
a stand-in tokenizer with the real special-token ids and the real image processor: a step's time and memory do not
depend on the weights' values. The checks, each a record ``{check, ok, value, expected, detail}`` (ok: True,
False, or None for n/a, not judged):

- ``cuda``, ``bf16``: a CUDA device, and bf16 support on it;
- ``steps``: a few GRPO steps with the project's trainer at the blog's shapes (4 prompts x G = 8 rows, 50 new tokens,
  4 passes, the blog profile's train params, a frozen reference model run every step as train.py does), seconds by
  phase (generation, reference forward, forward-backward, optimizer; the checkpoint save timed here);
- ``memory``: the peak GPU memory of those steps against ``vlm-grpo plan``'s prediction for the same workload;
- ``first_pass_ratio``: at the first training pass of a step the policy is the one that sampled, so the ratio
  exp(logp - old_logp) must be 1 up to the precision's rounding;
- ``batched_generation``: greedy decoding of 3 left-padded prompts of different image sizes and lengths together
  gives the tokens each gives alone;
- ``checkpoint_roundtrip``: a checkpoint saved after the steps, loaded into a fresh trainer, holds the same weights
  and optimizer state bit for bit, and one more step from it gives the record the original trainer gives;
- ``all_reduce``: under torchrun, an all-reduce across the processes.

Two liberties with the trainer, both because the weights are random: completions are pinned to ``max_new_tokens``
(``trainer.gen_config.min_new_tokens``; the trainer's sampling params have no such knob) so that every step decodes
the blog's worst case, and rows are scored by a checksum of their text (-1, 0, +1) instead of the count reward, under
which random text scores -1 in every row, every group is constant and ``update`` would skip the passes.

On the CPU (``--allow-cpu``, for the test suite) the same code runs in fp32; the GPU-only checks are n/a and the
memory is reported (peak RSS) but not judged. The test runs the mini profile's widths (``--widths mini --text-layers 1
--vision-depth 1``): at the 2B's widths even one layer of each is 335M parameters, about 7 GB of trainer state and
minutes of CPU time a step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import os
import platform
import shutil
import statistics
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stages import plan, prompts
from stages.counting.questions import CLEVR_PROBLEM, CountingExample
from stages.devices import cuda_status
from stages.io import InputError, write_json
from stages.rehearsal import on_real_canvas
from stages.scenes import render_clevr_scene
from stages.train import MACHINE_KEYS  # seconds and memory: not compared between runs
from stages.training.checkpoints import load_checkpoint, save_checkpoint
from stages.training.loop import GRPOTrainer, PhaseTimer
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:
    from stages.config import Config, TrainParams

log = logging.getLogger(__name__)

IMAGE_SIZE = (480, 320)  # (width, height) of CLEVR's images: 187 visual tokens each
GENERATION_SIZES = ((480, 320), (320, 480), (640, 480))  # the batched-generation check: 187, 187, 391 visual tokens
GENERATION_STYLES = ("default", "r1v", "default")  # R1V's prompt is longer: the other two are left-padded
PHASES = ("generation", "reference_forward", "train_forward_backward", "optimizer")  # timed by the trainer, every step
MEMORY_TOLERANCE = 1.15  # measured peak <= 1.15 x plan's prediction (the plan leaves 10% headroom on a card besides)
RATIO_TOLERANCE = {"bf16-mixed": 1e-2, "fp32": 1e-4}  # |mean ratio - 1| at the first pass
RECORD_TOLERANCE = {"cpu": (0.0, 0.0), "cuda": (1e-2, 1e-4)}  # (rtol, atol) between the resumed and original step
FINGERPRINT = "gpu-check"  # the checkpoint's fingerprint (load_checkpoint resumes only a matching one)
NO_CUDA = ("no CUDA device: gpu-check tests a GPU box before the study; pass --allow-cpu to run it on the CPU "
           "(for tests, at a reduced shape: --allow-cpu --widths mini --text-layers 1 --vision-depth 1)")


# ----------------------------------------------------------------------------------------------------------
# records


def record(check: str, ok: bool | None, value: Any = None, expected: Any = None, detail: str = "") -> dict:
    """One check's result; ``ok`` None: not applicable here (reported, not judged)."""
    return {"check": check, "ok": ok, "value": value, "expected": expected, "detail": detail}


def failed(check: str, err: BaseException) -> dict:
    """A check that raised: failed, with the error's first line."""
    first = (str(err).strip().splitlines() or [""])[0]
    return record(check, False, detail=f"{type(err).__name__}: {first}"[:300])


def all_passed(records: list[dict]) -> bool:
    """Every judged check passed (n/a ones are not judged)."""
    return all(r["ok"] is not False for r in records)


# ----------------------------------------------------------------------------------------------------------
# the machine


def world() -> tuple[int, int]:
    """(this process's rank, number of processes) as torchrun sets them; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def device_for(allow_cpu: bool) -> str:
    """The device to test: this process's GPU (cuda:LOCAL_RANK), or the CPU with ``allow_cpu``.
    Raises InputError (one line) when there is no GPU and the CPU was not allowed."""
    if allow_cpu:
        return "cpu"
    status = cuda_status()
    if not status.usable:
        raise InputError(f"{NO_CUDA}; CUDA is not usable here: {status.reason}")
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    torch.cuda.set_device(device)  # this process's GPU before any other CUDA call
    return device


def check_cuda(device: str) -> dict:
    if device == "cpu":
        return record("cuda", None, torch.cuda.is_available(), "a CUDA device", "n/a: --allow-cpu runs on the CPU")
    name = torch.cuda.get_device_name(device)
    return record("cuda", True, name, "a CUDA device",
                  f"{torch.cuda.device_count()} GPU(s), CUDA {torch.version.cuda}, torch {torch.__version__}")


def check_bf16(device: str) -> dict:
    if device == "cpu":
        return record("bf16", None, None, "supported", "n/a on the CPU (the CPU run is fp32)")
    ok = bool(torch.cuda.is_bf16_supported())
    return record("bf16", ok, ok, "supported", "train.precision bf16-mixed computes in bf16")


def check_all_reduce(device: str) -> dict:
    """Under torchrun (WORLD_SIZE > 1): the sum over processes of a tensor of ones is the number of processes."""
    _, size = world()
    if size == 1:
        gpus = torch.cuda.device_count() if device != "cpu" else 0
        detail = ("one process on the CPU" if device == "cpu" else "one GPU" if gpus <= 1 else
                  f"{gpus} GPUs, one process: `torchrun --nproc_per_node {gpus} -m stages.cli gpu-check` checks "
                  "the all-reduce")
        return record("all_reduce", None, None, "world size", f"n/a: {detail}")
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState(cpu=device == "cpu")  # the process group the trainer's Accelerator then uses (nccl / gloo)
    ones = torch.ones(1, device=device)
    dist.all_reduce(ones)
    got = int(ones.item())
    return record("all_reduce", got == size, got, size, f"{size} processes, backend {dist.get_backend()}")


def sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize(device)


class SyncedTimer(PhaseTimer):
    """The trainer's phase timer, waiting for the GPU at each phase's start and end: kernels run asynchronously, so
    without it a phase's tail would be counted in the next phase (backward's in the optimizer's)."""

    def __init__(self, device: str):
        super().__init__()
        self.device = device

    @contextlib.contextmanager
    def __call__(self, phase: str):
        sync(self.device)
        with super().__call__(phase):
            yield
            sync(self.device)


def reset_peak_memory(device: str) -> None:
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):
            plan._reset_peak_rss()  # Linux: VmHWM back to the current RSS


def peak_memory(device: str, records: list[dict]) -> int:
    """Bytes: the allocator's peak on a GPU, the process's peak RSS on the CPU, since the last reset. A trainer that
    logs each step's GPU peak (``peak_memory_gib``) resets the peak after every step: the largest of those then."""
    if device == "cpu":
        return plan._peak_rss()
    logged = [r["peak_memory_gib"] * 2**30 for r in records if "peak_memory_gib" in r]
    return int(max([torch.cuda.max_memory_allocated(device), *logged]))


# ----------------------------------------------------------------------------------------------------------
# the model under test


@dataclass
class Subject:
    """The model under test: ``build(dtype)`` makes a fresh copy of its initial weights on the device."""

    label: str
    config: Any  # Qwen2VLConfig
    processor: Any
    build: Callable[[str], Any]
    model_dir: Path | None  # None: random weights


def random_model(config, seed: int, device: str, dtype: str):
    """``config``'s model with the weights drawn from ``seed``, initialised on ``device`` (fast on a GPU)."""
    with torch.device(device):
        model = vlm.build_tiny_model(config, seed)
    return model.to(getattr(torch, dtype))


def standin_2b(text_layers: int | None, vision_depth: int | None):
    """(config, processor) of Qwen2-VL-2B-Instruct's shape (``stages.plan``; fewer layers if asked), a stand-in
    tokenizer with the real special ids (151643 ..) and the real image processor, as ``vlm-grpo rehearsal-inputs``."""
    from stages.fetch_model import tokenizer_corpus

    tokenizer = vlm.build_standin_tokenizer(tokenizer_corpus(10))
    config = plan.qwen2vl_2b_config(text_layers=text_layers, vision_depth=vision_depth)
    return config, vlm.VLProcessor(image_processor=vlm.real_image_processor(), tokenizer=tokenizer,
                                   chat_template=tokenizer.chat_template)


def standin_mini(cfg: Config, text_layers: int | None, vision_depth: int | None):
    """(config, processor) of the mini profile's tiny Qwen2-VL (params fetch_model.*) with the real image processor:
    the CPU test's shape (2B widths do not fit its memory and minute)."""
    from stages.fetch_model import tokenizer_corpus

    p = cfg.fetch_model
    tokenizer = vlm.build_tokenizer(tokenizer_corpus(10), p.vocab_size)
    config = vlm.tiny_config(tokenizer, text_hidden=p.text_hidden, text_layers=text_layers or p.text_layers,
                             text_heads=p.text_heads, text_kv_heads=p.text_kv_heads,
                             text_intermediate=p.text_intermediate, vision_embed=p.vision_embed,
                             vision_depth=vision_depth or p.vision_depth, vision_heads=p.vision_heads,
                             initializer_range=p.initializer_range)
    return config, vlm.VLProcessor(image_processor=vlm.real_image_processor(), tokenizer=tokenizer,
                                   chat_template=tokenizer.chat_template)


def subject(cfg: Config, model_dir: Path, widths: str, text_layers: int | None, vision_depth: int | None,
            device: str, seed: int = 0) -> Subject:
    """The downloaded model when ``model_dir`` holds config.json (the layer options then do not apply), else a
    random-weight model of ``widths`` (2b | mini)."""
    if (Path(model_dir) / "config.json").is_file():
        if text_layers or vision_depth:
            log.warning("%s holds a model: --text-layers / --vision-depth do not apply", model_dir)
        config = plan.config_from_dir(model_dir)
        return Subject(f"{model_dir} ({layers(config)})", config, vlm.load_processor(model_dir),
                       lambda dtype: vlm.load_model(model_dir, dtype, device)[0], Path(model_dir))
    config, processor = standin_2b(text_layers, vision_depth) if widths == "2b" else \
        standin_mini(cfg, text_layers, vision_depth)
    config._attn_implementation = "sdpa"
    name = "Qwen2-VL-2B-Instruct's shape" if widths == "2b" else "the mini profile's tiny Qwen2-VL"
    label = f"{name}, random weights ({layers(config)}, vocabulary {config.text_config.vocab_size:,d})"
    return Subject(label, config, processor, lambda dtype: random_model(config, seed, device, dtype), None)


def layers(config) -> str:
    text, vision = config.text_config.num_hidden_layers, config.vision_config.depth
    return f"{text} text layer{'s' * (text != 1)}, {vision} vision block{'s' * (vision != 1)}"


def scene(rng: np.random.Generator, count: int, size: tuple[int, int]):
    """A CLEVR-like scene of ``count`` objects, rendered square and centred on a ``size`` canvas."""
    return on_real_canvas(render_clevr_scene(rng, count, size=min(size))[0], size)


def synthetic_examples(n: int, seed: int = 0) -> list[CountingExample]:
    """``n`` CLEVR counting questions on 480x320 scenes of 3-10 objects."""
    rng = np.random.default_rng(seed)
    counts = [int(c) for c in rng.integers(3, 11, n)]
    return [CountingExample(scene(rng, c, IMAGE_SIZE), CLEVR_PROBLEM, c, i) for i, c in enumerate(counts)]


def checksum_reward(text: str, truth: int) -> int:
    """-1, 0 or +1 from a checksum of the text: random weights never write a number, so the count reward would be -1
    everywhere and every group constant; this keeps the groups' rewards spread, deterministically."""
    return zlib.crc32(text.encode()) % 3 - 1


def check_params(train: TrainParams, steps: int, max_new_tokens: int, device: str) -> TrainParams:
    """The blog profile's train params for ``steps`` steps of ``max_new_tokens`` tokens, the reference run every step
    (kl_log_every 1, as the study logs the KL); fp32 on the CPU (bf16 there is 2-3x slower and not what is tested)."""
    return dataclasses.replace(train, steps=steps, max_new_tokens=max_new_tokens, kl_log_every=1,
                               precision=train.precision if device != "cpu" else "fp32")


def make_trainer(sub: Subject, reference, examples: list[CountingExample], params: TrainParams, injection,
                 device: str, seed: int = 0) -> GRPOTrainer:
    """The project's trainer on a fresh fp32 policy: default prompt, no injection, completions pinned to
    ``max_new_tokens``, the checksum reward, a GPU-synchronised phase timer."""
    from accelerate import Accelerator

    trainer = GRPOTrainer(sub.build("float32"), reference, sub.processor, examples, "default", "none", params,
                          injection, seed, accelerator=Accelerator(cpu=device == "cpu"))
    trainer.gen_config.min_new_tokens = params.max_new_tokens  # every row decodes the worst case, as plan assumes
    trainer.reward = checksum_reward
    trainer.timer = SyncedTimer(device)
    return trainer


def release(trainer: GRPOTrainer, device: str) -> None:
    """Drop the accelerator's references to the trainer's model and optimizer and give their memory back."""
    trainer.acc.free_memory()
    trainer.model = trainer.opt = None
    gc.collect()
    if device != "cpu":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------
# steps, phases, memory


def step_phases(rec: dict, timer: PhaseTimer) -> dict[str, float]:
    """Seconds by phase of the step just run: the record's ``time_<phase>`` keys when the trainer logs them (it then
    resets its timer itself), else what the timer holds."""
    logged = {k.removeprefix("time_"): v for k, v in rec.items() if k.startswith("time_")}
    return logged or timer.reset()


def run_steps(trainer: GRPOTrainer, steps: int, device: str) -> tuple[list[dict], list[dict[str, float]]]:
    """``steps`` training steps from step 0: (records, seconds by phase of each step, with its total)."""
    records, phases = [], []
    trainer.timer.reset()
    for step in range(steps):
        sync(device)
        t0 = time.perf_counter()
        records.append(trainer.train_step(step))
        sync(device)
        phases.append({**step_phases(records[-1], trainer.timer), "total": time.perf_counter() - t0})
        log.info("step %d: %.2f s (%s)", step, phases[-1]["total"],
                 ", ".join(f"{k} {v:.2f}" for k, v in phases[-1].items() if k != "total"))
    return records, phases


def check_steps(records: list[dict], phases: list[dict[str, float]], checkpoint_s: float, blog_steps: int) -> dict:
    """Every step timed each phase, updated the policy (no skipped update) and had a finite loss."""
    problems = []
    for i, (rec, ph) in enumerate(zip(records, phases, strict=True)):
        missing = [p for p in PHASES if not ph.get(p, 0.0) > 0]
        if missing:
            problems.append(f"step {i}: {', '.join(missing)} not timed")
        if rec.get("skipped_update"):
            problems.append(f"step {i}: update skipped")
        elif not math.isfinite(rec.get("loss", math.nan)):
            problems.append(f"step {i}: loss {rec.get('loss')}")
    if not records:
        problems.append("no step ran")
    totals = [ph["total"] for ph in phases]
    median = statistics.median(totals) if totals else math.nan
    means = {p: statistics.fmean(ph.get(p, 0.0) for ph in phases) if phases else 0.0 for p in PHASES}
    value = {"seconds_per_step": [round(t, 3) for t in totals], "phase_seconds": {k: round(v, 4) for k, v in means.items()}
             | {"checkpoint": round(checkpoint_s, 4)}}
    detail = "; ".join(problems) if problems else (
        f"median {median:.2f} s a step: the blog profile's {blog_steps} steps take about "
        f"{median * blog_steps / 3600:.1f} h a cell (the blog: about 17 s a step)")
    return record("steps", not problems, value, f"{', '.join(PHASES)} timed every step; no skipped update", detail)


def predicted_peak(config, params: TrainParams, batch: dict, device: str, pixel_limits=(None, None)) -> int:
    """``vlm-grpo plan``'s peak for this workload: the config's shapes, B (this process's share) x G rows, the prompt
    length of ``batch`` (B encoded prompts), every row ``max_new_tokens`` long, the reference counted (it is loaded)."""
    shape, counts = plan.shape_of(config), plan.count_params(config)
    visual = int(batch["image_grid_thw"][0].prod()) // shape.merge**2
    text_tokens = batch["input_ids"].shape[1] - visual
    w = plan.workload_for(params, shape, *IMAGE_SIZE, text_tokens, *pixel_limits)
    w = dataclasses.replace(w, prompts=max(1, w.prompts // world()[1]))
    est = plan.estimate(counts, shape, w, plan.current_option(params), reference=True,
                        autocast_device="cpu" if device == "cpu" else "cuda")
    return est.peak


def check_memory(measured: int, predicted: int, judged: bool, tolerance: float = MEMORY_TOLERANCE) -> dict:
    """The measured peak against the plan's prediction; ``judged`` False (CPU: RSS counts the interpreter and
    libraries, not the allocator) reports without judging."""
    ratio = measured / predicted if predicted else math.nan
    value = {"measured_gib": round(measured / plan.GiB, 3), "predicted_gib": round(predicted / plan.GiB, 3),
             "ratio": round(ratio, 3)}
    expected = f"measured <= {tolerance:g} x predicted"
    if not judged:
        return record("memory", None, value, expected, "n/a on the CPU: peak RSS (interpreter and libraries "
                                                       "included) beside the plan's GPU count, not judged")
    return record("memory", ratio <= tolerance, value, expected,
                  "torch.cuda.max_memory_allocated over the steps vs `vlm-grpo plan` (reference counted)")


# ----------------------------------------------------------------------------------------------------------
# the first pass's ratio


def first_pass_ratio(trainer: GRPOTrainer, ro) -> tuple[float, float]:
    """(mean ratio, max |logp - old_logp|) over the completion tokens of rollout ``ro``, under the policy that
    sampled it (the first pass of ``update``, before any optimizer step), in the training forward's precision."""
    policy = trainer.policy
    was_training = policy.training
    policy.train()
    with torch.no_grad(), trainer.compute():
        logp = vlm.completion_logprobs(policy, ro.batch, ro.completion_ids, ro.completion_mask,
                                       group_size=trainer.p.group_size).float().cpu()
    policy.train(was_training)
    delta = (logp - ro.old_logp)[ro.completion_mask]  # (tokens,)
    return float(delta.exp().mean()), float(delta.abs().max())


def check_first_pass_ratio(mean_ratio: float, max_abs_diff: float, precision: str) -> dict:
    tol = RATIO_TOLERANCE[precision]
    ok = abs(mean_ratio - 1.0) <= tol
    return record("first_pass_ratio", ok, round(mean_ratio, 6), f"1 +- {tol:g} ({precision})",
                  f"mean of exp(logp - old_logp) over the tokens of one rollout; max |logp - old_logp| "
                  f"{max_abs_diff:.2e}")


# ----------------------------------------------------------------------------------------------------------
# batched generation


@contextlib.contextmanager
def exact_fp32():
    """Full fp32 matmuls and convolutions (no TF32) on a GPU: a greedy comparison must not hinge on rounding."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def encode(processor, images, styles) -> dict:
    texts = [vlm.chat_prompt(processor, prompts.build_messages(s, CLEVR_PROBLEM)) for s in styles]
    return dict(vlm.encode_prompts(processor, images, texts))


def generation_mismatches(policy, processor, max_new_tokens: int, group_size: int = 2, seed: int = 1) -> dict:
    """Greedy completions of 3 prompts (images of :data:`GENERATION_SIZES`, prompts of :data:`GENERATION_STYLES`)
    decoded as one left-padded batch vs each prompt alone, in fp32: tokens compared, the prompts whose tokens differ,
    and the largest log-prob difference."""
    rng = np.random.default_rng(seed)
    images = [scene(rng, 3 + i, size) for i, size in enumerate(GENERATION_SIZES)]
    gen_config = vlm.sampling_config(processor.tokenizer, max_new_tokens=max_new_tokens, do_sample=False,
                                     min_new_tokens=max_new_tokens)
    was_training = policy.training
    policy.eval()
    with exact_fp32():
        batch = encode(processor, images, GENERATION_STYLES)
        together = vlm.generate(policy, processor, batch, gen_config, group_size=group_size)
        alone = [vlm.generate(policy, processor, encode(processor, [img], [style]), gen_config, group_size=group_size)
                 for img, style in zip(images, GENERATION_STYLES, strict=True)]
    policy.train(was_training)
    mismatched, tokens, max_diff = [], 0, 0.0
    for p, solo in enumerate(alone):
        rows, width = slice(p * group_size, (p + 1) * group_size), solo.completion_ids.shape[1]
        same = (torch.equal(together.completion_ids[rows, :width], solo.completion_ids)
                and not together.completion_mask[rows, width:].any())
        if not same:
            mismatched.append(p)
        tokens += int(solo.completion_mask.sum())
        max_diff = max(max_diff, float((together.logprobs[rows, :width] - solo.logprobs).abs().max()))
    padded = int((batch["attention_mask"] == 0).any(dim=1).sum())
    return {"prompts": len(images), "left_padded": padded, "tokens": tokens, "mismatched": mismatched,
            "max_logprob_diff": max_diff}


def check_batched_generation(result: dict) -> dict:
    ok = not result["mismatched"] and result["tokens"] > 0
    detail = (f"{result['prompts']} prompts ({result['left_padded']} left-padded; images "
              f"{', '.join(f'{w}x{h}' for w, h in GENERATION_SIZES)}), greedy, fp32; max log-prob difference "
              f"{result['max_logprob_diff']:.1e}")
    if result["mismatched"]:
        detail = f"prompts {result['mismatched']} decode other tokens in the batch; " + detail
    return record("batched_generation", ok, result, "batched tokens == each prompt's tokens alone", detail)


# ----------------------------------------------------------------------------------------------------------
# checkpoint round trip

_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def tensor_fingerprint(t: torch.Tensor, chunk: int = 1 << 24) -> tuple[int, int]:
    """Two integer checksums of a tensor's bits, computed where it lives: their sum and a position-weighted sum.

    Equal bits give equal checksums on any device (integer sums, wrapping, are exact); a changed bit changes the
    first, a permutation the second. ``chunk`` elements at a time bound the int64 copy (the 2B's embedding: 233M).
    """
    flat = t.detach().reshape(-1)
    if flat.dtype.is_floating_point:
        flat = flat.view(_BITS[flat.element_size()])
    total = weighted = 0
    for start in range(0, flat.numel(), chunk):
        part = flat[start : start + chunk].long()
        pos = torch.arange(start, start + part.numel(), device=part.device) % 65521 + 1
        total += int(part.sum())
        weighted += int((part * pos).sum())
    return total, weighted


def state_fingerprints(policy, optimizer) -> tuple[dict, dict]:
    """(per weight, per optimizer-state tensor and hyper-parameter) fingerprints of a trainer's state."""
    weights = {name: tensor_fingerprint(p) for name, p in policy.named_parameters()}
    state = optimizer.state_dict()
    opt = {f"{i}.{k}": tensor_fingerprint(v) if isinstance(v, torch.Tensor) else v
           for i, per_param in state["state"].items() for k, v in per_param.items()}
    for g, group in enumerate(state["param_groups"]):
        opt |= {f"group{g}.{k}": v for k, v in group.items()}
    return weights, opt


def differing(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def record_differences(a: dict, b: dict, rtol: float, atol: float) -> dict[str, list]:
    """Keys of two step records whose values differ beyond ``atol + rtol * |a|`` (timings left out; NaN == NaN)."""
    out = {}
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if key in MACHINE_KEYS or key.startswith("time_") or x == y:
            continue
        if isinstance(x, float) and isinstance(y, float) and (
                (math.isnan(x) and math.isnan(y)) or abs(x - y) <= atol + rtol * abs(x)):
            continue
        out[key] = [x, y]
    return out


def check_checkpoint_roundtrip(saved: tuple[dict, dict], loaded: tuple[dict, dict], original: dict, resumed: dict,
                               resumed_at: int | None, expected_step: int, device: str,
                               seconds: dict[str, float]) -> dict:
    """The loaded trainer holds the saved weights and optimizer state exactly, resumes at the saved step, and its next
    step's record equals the original trainer's (exactly on the CPU in fp32; within a bf16 tolerance on a GPU)."""
    rtol, atol = RECORD_TOLERANCE["cpu" if device == "cpu" else "cuda"]
    weights, opt = differing(saved[0], loaded[0]), differing(saved[1], loaded[1])
    records = record_differences(original, resumed, rtol, atol)
    problems = ([f"{len(weights)} weights differ ({weights[0]}...)"] if weights else []) + \
               ([f"{len(opt)} optimizer entries differ ({opt[0]}...)"] if opt else []) + \
               ([f"resumed at step {resumed_at}, not {expected_step}"] if resumed_at != expected_step else []) + \
               ([f"the next step's record differs: {records}"] if records else [])
    value = {"weights": len(saved[0]), "weights_equal": not weights, "optimizer_entries": len(saved[1]),
             "optimizer_equal": not opt, "next_step_record_equal": not records, "resumed_at": resumed_at,
             "loss": [original.get("loss"), resumed.get("loss")], **{k: round(v, 3) for k, v in seconds.items()}}
    tolerance = "exactly" if rtol == atol == 0 else f"within rtol {rtol:g}, atol {atol:g}"
    return record("checkpoint_roundtrip", not problems, value,
                  f"weights and optimizer state bit for bit; the next step's record {tolerance}",
                  "; ".join(problems)[:500] or f"saved in {seconds['save_s']:.2f} s, loaded in {seconds['load_s']:.2f} s")


# ----------------------------------------------------------------------------------------------------------
# the whole check


def save(trainer: GRPOTrainer, work: Path, step: int) -> float:
    """Checkpoint ``trainer`` (the main process writes, the others wait) as train.py does; returns the seconds."""
    t0 = time.perf_counter()
    if trainer.acc.is_main_process:
        save_checkpoint(work, trainer.policy, trainer.opt, {"next_step": step, "fingerprint": FINGERPRINT,
                                                            "digit_history": list(trainer.digit_history)},
                        trainable_only=trainer.lora)
    trainer.acc.wait_for_everyone()
    return time.perf_counter() - t0


def resume(trainer: GRPOTrainer, work: Path, device: str) -> tuple[dict, float]:
    """Load the checkpoint into a fresh ``trainer`` (every process reads it); returns (its state, the seconds)."""
    t0 = time.perf_counter()
    state = load_checkpoint(work, trainer.policy, trainer.opt, FINGERPRINT, device, trainable_only=trainer.lora) or {}
    trainer.digit_history.extend(state.get("digit_history", []))
    return state, time.perf_counter() - t0


def roundtrip(trainer: GRPOTrainer, fresh: Callable[[], GRPOTrainer], work: Path, step: int,
              device: str) -> tuple[dict, float]:
    """Save ``trainer`` at ``step``, run that step, free it; then a ``fresh()`` trainer loads the checkpoint and runs
    the same step (one trainer at a time: two 2B trainers do not fit an 80 GB card). Returns (the check's record,
    the save's seconds)."""
    save_s = save(trainer, work, step)
    saved = state_fingerprints(trainer.policy, trainer.opt)
    original = trainer.train_step(step)
    release(trainer, device)
    resumed_trainer = fresh()
    state, load_s = resume(resumed_trainer, work, device)
    loaded = state_fingerprints(resumed_trainer.policy, resumed_trainer.opt)
    resumed = resumed_trainer.train_step(step)
    release(resumed_trainer, device)
    return check_checkpoint_roundtrip(saved, loaded, original, resumed, state.get("next_step"), step, device,
                                      {"save_s": save_s, "load_s": load_s}), save_s


def trainer_checks(cfg: Config, sub: Subject, params: TrainParams, work: Path, device: str) -> list[dict]:
    """steps, memory, first_pass_ratio, batched_generation, checkpoint_roundtrip, on one trainer (a fresh one for the
    round trip's resumed half)."""
    # as train.py: a frozen reference copy (bf16 under bf16-mixed) for a full fine-tune, the adapters off under LoRA
    reference = None if params.lora_rank else sub.build("bfloat16" if params.precision == "bf16-mixed" else "float32")
    examples = synthetic_examples(max(8, params.prompts_per_step))

    def fresh() -> GRPOTrainer:
        return make_trainer(sub, reference, examples, params, cfg.injection_params, device)

    trainer, steps = fresh(), params.steps
    log.info("steps: %d GRPO steps, %d prompts x G = %d, %d new tokens, %d passes, %s", steps, params.prompts_per_step,
             params.group_size, params.max_new_tokens, params.epochs, params.precision)
    reset_peak_memory(device)
    records, phases = run_steps(trainer, steps, device)
    measured = peak_memory(device, records)
    predicted = predicted_peak(sub.config, params, trainer.encode(trainer.sample_prompts(0)), device,
                               plan.image_pixel_limits(sub.model_dir))
    log.info("first_pass_ratio: one rollout at step %d", steps)
    ratio = check_first_pass_ratio(*first_pass_ratio(trainer, trainer.collect(steps)), params.precision)
    log.info("batched_generation: 3 prompts, greedy")
    generation = check_batched_generation(generation_mismatches(trainer.policy, sub.processor, params.max_new_tokens))
    log.info("checkpoint_roundtrip: save, one more step, a fresh trainer, load, the same step")
    trip, save_s = roundtrip(trainer, fresh, work, steps, device)
    return [check_steps(records, phases, save_s, cfg.train.steps), check_memory(measured, predicted, device != "cpu"),
            ratio, generation, trip]


def main(cfg: Config, model_dir: Path, steps: int, out: Path, allow_cpu: bool = False, widths: str = "2b",
         text_layers: int | None = None, vision_depth: int | None = None, max_new_tokens: int | None = None,
         command: str = "vlm-grpo gpu-check") -> dict:
    """Run every check; the main process writes ``out`` (JSON). ``cfg``: params.yaml under the blog profile."""
    t_start = time.perf_counter()
    device = device_for(allow_cpu)  # before anything is built: no GPU and no --allow-cpu is a one-line error
    checks = [check_cuda(device), check_bf16(device), check_all_reduce(device)]
    params = check_params(cfg.train, steps, max_new_tokens or cfg.train.max_new_tokens, device)
    sub = subject(cfg, model_dir, widths, text_layers, vision_depth, device)
    log.info("gpu-check on %s: %s", device, sub.label)
    work = Path(out).parent / f".{Path(out).stem}-checkpoint"  # one path for every process (rank 0 writes it)
    try:
        checks += trainer_checks(cfg, sub, params, work, device)
    except Exception as err:  # CUDA out of memory, a shape or file error: a failed row, not a traceback
        log.exception("the trainer checks stopped")
        checks.append(failed("steps", err))
    rank, size = world()
    if rank == 0:
        shutil.rmtree(work, ignore_errors=True)
    report = {"ok": all_passed(checks), "checks": checks, "device": checks[0]["value"] if device != "cpu" else "cpu",
              "model": sub.label, "precision": params.precision, "processes": size, "main_process": rank == 0,
              "workload": {"prompts": params.prompts_per_step, "group_size": params.group_size,
                           "max_new_tokens": params.max_new_tokens, "epochs": params.epochs, "steps": steps,
                           "image": list(IMAGE_SIZE)},
              "versions": versions(), "command": command, "seconds": round(time.perf_counter() - t_start, 1)}
    if rank == 0:
        write_json(out, report)
    return report


def versions() -> dict:
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda}


# ----------------------------------------------------------------------------------------------------------
# the table


def cell(value: Any) -> str:
    """A value for a markdown cell: floats to 4 significant digits, mappings as ``key value; ...``."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "; ".join(f"{k} {cell(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    return str(value).replace("|", "\\|")


def table(report: dict) -> str:
    """The pass/fail table (markdown) and a verdict line."""
    result = {True: "pass", False: "FAIL", None: "n/a"}
    lines = [f"gpu-check on {report['device']}: {report['model']}, {report['precision']}", "",
             "| check | result | value | expected | detail |", "|---|---|---|---|---|"]
    lines += [f"| {r['check']} | {result[r['ok']]} | {cell(r['value'])} | {cell(r['expected'])} | {cell(r['detail'])} |"
              for r in report["checks"]]
    failed_checks = [r["check"] for r in report["checks"] if r["ok"] is False]
    lines += ["", f"{'PASS' if report['ok'] else 'FAIL'}: " + (
        "every judged check passed" if report["ok"] else f"failed: {', '.join(failed_checks)}")
        + f" ({report['seconds']:.0f} s)"]
    return "\n".join(lines)
