"""`vlm-grpo gpu-check` on the CPU at a reduced shape (its code runs end to end), its one-line refusal without CUDA,
and each check's verdict on hand-made inputs, so that every check can fail."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

from stages import gpu_check as gcheck
from stages.plan import GiB

CHECKS = ["cuda", "bf16", "all_reduce", "steps", "memory", "first_pass_ratio", "batched_generation",
          "checkpoint_roundtrip"]
REDUCED = ["--allow-cpu", "--widths", "mini", "--text-layers", "1", "--vision-depth", "1", "--steps", "2",
           "--max-new-tokens", "4"]


def _gpu_check(tmp_path, repo_root, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.cli", "gpu-check", "--model", str(tmp_path / "no-model"),
         "--out", str(tmp_path / "reports" / "gpu_check.json"), "--params", str(repo_root / "params.yaml"), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


# ----------------------------------------------------------------------------------------------------------
# the command


def test_gpu_check_runs_every_check_on_the_cpu_at_a_reduced_shape(tmp_path, repo_root):
    proc = _gpu_check(tmp_path, repo_root, *REDUCED)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "reports" / "gpu_check.json").read_text())
    checks = {r["check"]: r for r in report["checks"]}
    assert list(checks) == CHECKS and report["ok"] is True
    assert all(r["ok"] in (True, None) for r in report["checks"]), report["checks"]
    # the CPU run judges what it can; the GPU-only checks are n/a, the memory is reported but not judged
    assert [c for c, r in checks.items() if r["ok"] is None] == ["cuda", "bf16", "all_reduce", "memory"]
    assert report["precision"] == "fp32" and report["workload"]["steps"] == 2

    steps = checks["steps"]["value"]
    assert len(steps["seconds_per_step"]) == 2 and all(s > 0 for s in steps["seconds_per_step"])
    assert set(steps["phase_seconds"]) == {*gcheck.PHASES, "checkpoint"}
    assert all(s > 0 for s in steps["phase_seconds"].values()), steps
    memory = checks["memory"]["value"]
    assert memory["measured_gib"] > 0 and memory["predicted_gib"] > 0

    assert abs(checks["first_pass_ratio"]["value"] - 1) <= 1e-4
    gen = checks["batched_generation"]["value"]
    assert gen["prompts"] == 3 and gen["left_padded"] >= 1 and gen["mismatched"] == []
    assert gen["tokens"] == 3 * 2 * 4  # 3 prompts x G = 2 rows x 4 pinned tokens, every one compared

    trip = checks["checkpoint_roundtrip"]["value"]
    assert trip["weights"] > 0 and trip["optimizer_entries"] > 0 and trip["resumed_at"] == 2
    assert trip["weights_equal"] and trip["optimizer_equal"] and trip["next_step_record_equal"]
    assert trip["loss"][0] == trip["loss"][1] and math.isfinite(trip["loss"][0])

    assert "| checkpoint_roundtrip | pass |" in proc.stdout and "PASS: every judged check passed" in proc.stdout
    assert not list((tmp_path / "reports").glob(".*")), "the round trip's checkpoint is left behind"


def test_without_cuda_and_without_allow_cpu_it_stops_with_one_line_before_building_a_model(tmp_path, repo_root):
    t0 = time.perf_counter()
    proc = _gpu_check(tmp_path, repo_root, env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU visible, whatever the machine
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA device") and "--allow-cpu" in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "reports").exists()
    assert time.perf_counter() - t0 < 60  # imports only: nothing was built


# ----------------------------------------------------------------------------------------------------------
# every check can fail


def test_first_pass_ratio_is_judged_against_the_precisions_tolerance():
    assert gcheck.check_first_pass_ratio(1.0 + 5e-5, 1e-4, "fp32")["ok"] is True
    assert gcheck.check_first_pass_ratio(1.005, 0.1, "bf16-mixed")["ok"] is True
    assert gcheck.check_first_pass_ratio(1.005, 0.1, "fp32")["ok"] is False  # bf16's rounding is not fp32's
    bad = gcheck.check_first_pass_ratio(1.5, 0.4, "bf16-mixed")
    assert bad["ok"] is False and bad["value"] == 1.5 and bad["expected"] == "1 +- 0.01 (bf16-mixed)"


def test_memory_above_the_plans_prediction_fails_on_a_gpu_and_is_only_reported_on_the_cpu():
    assert gcheck.check_memory(int(1.1 * GiB), GiB, judged=True)["ok"] is True
    over = gcheck.check_memory(int(1.2 * GiB), GiB, judged=True)
    assert over["ok"] is False and over["value"]["ratio"] == pytest.approx(1.2, abs=1e-3)
    assert gcheck.check_memory(10 * GiB, GiB, judged=False)["ok"] is None


def test_steps_fail_on_a_skipped_update_an_untimed_phase_or_a_nan_loss():
    phases = {p: 0.5 for p in gcheck.PHASES} | {"total": 2.0}
    good = {"loss": 0.1, "skipped_update": 0.0}
    assert gcheck.check_steps([good, good], [phases, phases], 0.3, 2000)["ok"] is True
    assert gcheck.check_steps([good, {"loss": 0.0, "skipped_update": 1.0}], [phases, phases], 0.3, 2000)["ok"] is False
    untimed = phases | {"reference_forward": 0.0}
    assert "reference_forward not timed" in gcheck.check_steps([good], [untimed], 0.3, 2000)["detail"]
    assert gcheck.check_steps([{"loss": math.nan, "skipped_update": 0.0}], [phases], 0.3, 2000)["ok"] is False
    assert gcheck.check_steps([], [], 0.3, 2000)["ok"] is False


def test_batched_generation_fails_when_a_prompt_decodes_other_tokens():
    result = {"prompts": 3, "left_padded": 2, "tokens": 24, "mismatched": [], "max_logprob_diff": 1e-6}
    assert gcheck.check_batched_generation(result)["ok"] is True
    bad = gcheck.check_batched_generation(result | {"mismatched": [1]})
    assert bad["ok"] is False and bad["detail"].startswith("prompts [1]")


def test_tensor_fingerprint_sees_one_bit_and_a_permutation():
    t = torch.randn(1000)
    assert gcheck.tensor_fingerprint(t) == gcheck.tensor_fingerprint(t.clone()) == gcheck.tensor_fingerprint(t, chunk=7)
    flipped = t.clone()
    flipped.view(torch.int32)[123] ^= 1  # the last mantissa bit of one weight
    assert gcheck.tensor_fingerprint(flipped)[0] != gcheck.tensor_fingerprint(t)[0]
    swapped = t.clone()
    swapped[[0, 1]] = t[[1, 0]]
    total, weighted = gcheck.tensor_fingerprint(swapped)
    assert total == gcheck.tensor_fingerprint(t)[0] and weighted != gcheck.tensor_fingerprint(t)[1]
    b = t.bfloat16()
    assert gcheck.tensor_fingerprint(b) == gcheck.tensor_fingerprint(b.clone()) != gcheck.tensor_fingerprint(b * 2)


def test_checkpoint_roundtrip_fails_on_a_changed_weight_an_optimizer_entry_or_another_next_step():
    state = ({"w": (1, 2), "v": (3, 4)}, {"0.exp_avg": (5, 6), "group0.lr": 1e-5})
    rec = {"step": 3, "loss": 0.25, "kl": math.nan, "seconds_per_step": 1.0, "time_generation": 0.3, "_sample": "a"}
    seconds = {"save_s": 0.1, "load_s": 0.1}
    ok = gcheck.check_checkpoint_roundtrip(state, state, rec, rec | {"seconds_per_step": 2.0, "time_generation": 0.9}, 3,
                                       3, "cpu", seconds)
    assert ok["ok"] is True and ok["value"]["next_step_record_equal"]  # timings differ, NaN == NaN
    weight = gcheck.check_checkpoint_roundtrip(state, ({"w": (1, 2), "v": (3, 5)}, state[1]), rec, rec, 3, 3, "cpu",
                                           seconds)
    assert weight["ok"] is False and not weight["value"]["weights_equal"] and "1 weights differ (v" in weight["detail"]
    opt = gcheck.check_checkpoint_roundtrip(state, (state[0], {**state[1], "group0.lr": 1e-4}), rec, rec, 3, 3, "cpu",
                                        seconds)
    assert opt["ok"] is False and not opt["value"]["optimizer_equal"]
    assert gcheck.check_checkpoint_roundtrip(state, state, rec, rec, 2, 3, "cpu", seconds)["ok"] is False
    # the next step's loss: exactly on the CPU, within bf16's tolerance on a GPU
    nearby = rec | {"loss": 0.25 + 1e-4}
    assert gcheck.check_checkpoint_roundtrip(state, state, rec, nearby, 3, 3, "cpu", seconds)["ok"] is False
    assert gcheck.check_checkpoint_roundtrip(state, state, rec, nearby, 3, 3, "cuda:0", seconds)["ok"] is True
    far = gcheck.check_checkpoint_roundtrip(state, state, rec, rec | {"loss": 0.5, "_sample": "b"}, 3, 3, "cuda:0", seconds)
    assert far["ok"] is False and "'loss': [0.25, 0.5]" in far["detail"] and "_sample" in far["detail"]


def test_the_verdict_judges_failures_only_and_the_table_says_which():
    records = [gcheck.record("cuda", None, False), gcheck.record("steps", True, {"seconds_per_step": [1.0]}),
               gcheck.record("memory", False, {"ratio": 1.3}, "measured <= 1.15 x predicted", "a | b")]
    assert gcheck.all_passed(records[:2]) and not gcheck.all_passed(records)
    report = {"ok": False, "checks": records, "device": "NVIDIA H100", "model": "m", "precision": "bf16-mixed",
              "seconds": 12.0}
    text = gcheck.table(report)
    assert "| cuda | n/a |" in text and "| steps | pass | seconds_per_step [1] |" in text
    assert "| memory | FAIL | ratio 1.3 | measured <= 1.15 x predicted | a \\| b |" in text
    assert text.splitlines()[-1] == "FAIL: failed: memory (12 s)"
    assert gcheck.failed("steps", RuntimeError("CUDA out of memory.\nTried to allocate"))["detail"] == \
        "RuntimeError: CUDA out of memory."


def test_the_2b_standin_tokenizer_holds_the_configs_special_ids():
    """The random-weight 2B (plan's config) and its stand-in tokenizer agree on every special id, so the prompts'
    image tokens are the ones the model replaces: a mismatch would surface only on a GPU."""
    config, processor = gcheck.standin_2b(text_layers=1, vision_depth=1)
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(name) for name in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>",
                                                               "<|video_pad|>", "<|im_end|>", "<|endoftext|>")}
    assert ids == {"<|image_pad|>": config.image_token_id, "<|vision_start|>": config.vision_start_token_id,
                   "<|vision_end|>": config.vision_end_token_id, "<|video_pad|>": config.video_token_id,
                   "<|im_end|>": config.text_config.eos_token_id, "<|endoftext|>": config.text_config.pad_token_id}
    assert config.text_config.vocab_size == 151936 and config.text_config.hidden_size == 1536
    assert len(tok) <= config.text_config.vocab_size


def test_the_batched_generation_check_catches_right_padding(tiny_model, tiny_processor):
    """The check itself bites: the same prompts padded on the right (TRL issue #5785's trap) decode otherwise."""
    import copy

    from stages.vlm import qwen2vl as vlm

    tok = copy.deepcopy(tiny_processor.tokenizer)
    processor = vlm.VLProcessor(image_processor=vlm.real_image_processor(), tokenizer=tok,
                                chat_template=tok.chat_template)
    left = gcheck.generation_mismatches(tiny_model, processor, max_new_tokens=3)
    assert left["mismatched"] == [] and left["max_logprob_diff"] < 1e-4
    tok.padding_side = "right"
    right = gcheck.generation_mismatches(tiny_model, processor, max_new_tokens=3)
    assert right["max_logprob_diff"] > 1e-2 and gcheck.check_batched_generation(right)["ok"] is False, right
