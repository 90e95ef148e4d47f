"""``vlm-grpo plan``: parameter counts by hand, the memory components, the fit table, the activation count
against the graph of a small Qwen2-VL on CPU, and the command."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from stages import plan
from stages.plan import GiB, Option, Workload

H, INTER, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 1536, 8960, 28, 12, 2, 128, 151936
E, DEPTH, MLP, PATCH_IN, MERGED = 1280, 32, 5120, 3 * 2 * 14 * 14, 1280 * 4


@pytest.fixture(scope="module")
def two_b():
    config = plan.qwen2vl_2b_config()
    return plan.count_params(config), plan.shape_of(config)


@pytest.fixture(scope="module")
def blog_workload():
    # the blog's step: 4 prompts x G = 8, 50 new tokens, 480x320 images (748 patches -> 187 visual tokens)
    return Workload(prompts=4, group=8, max_new_tokens=50, patches=748, visual_tokens=187, text_tokens=60)


def test_param_count_of_the_2b_shape_by_hand(two_b):
    params, _ = two_b
    kv = KV_HEADS * HEAD_DIM
    # one decoder layer: q, k, v with biases, o without; MLP gate/up/down without biases; two RMSNorms
    attention = (H * H + H) + 2 * (H * kv + kv) + H * H
    layer = attention + 3 * H * INTER + 2 * H
    language = LAYERS * layer + H  # + the final norm
    embedding = VOCAB * H  # the lm_head is tied to it: counted once
    # one vision block: 2 LayerNorms (weight + bias), qkv and proj with biases, fc1 / fc2 with biases
    block = 2 * 2 * E + (E * 3 * E + 3 * E) + (E * E + E) + (E * MLP + MLP) + (MLP * E + E)
    merger = 2 * E + (MERGED * MERGED + MERGED) + (MERGED * H + H)  # LayerNorm, then 2x2-merged MLP to the text width
    vision = E * PATCH_IN + DEPTH * block + merger  # the patch embedding is a bias-free Conv3d
    assert layer == 46_797_824
    assert params.language == language == 1_310_340_608
    assert params.embedding == embedding and params.tied
    assert params.vision == vision == 665_271_296
    assert params.total == language + embedding + vision == 2_208_985_600  # Qwen2-VL-2B's "2.2B"


def test_lora_trainable_params_by_hand(two_b):
    _, shape = two_b
    r, kv = 16, KV_HEADS * HEAD_DIM
    # r * (d_in + d_out) for q, k, v, o, gate, up, down of one layer
    one_layer = r * ((H + H) + (H + kv) + (H + kv) + (H + H) + (H + INTER) + (H + INTER) + (INTER + H))
    assert one_layer == 659_456
    assert plan.lora_params(dataclasses.replace(shape, layers=1), r) == one_layer
    assert plan.lora_params(shape, r) == LAYERS * one_layer


def test_lora_count_matches_the_trainers_peft_model():
    config = plan.qwen2vl_2b_config(text_layers=1, vision_depth=1, vocab_size=1024)
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device("meta"):
        model = plan.prepare_policy(Qwen2VLForConditionalGeneration(config), Option(lora_rank=8))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == plan.lora_params(plan.shape_of(config), 8)


def test_weights_gradients_and_adamw(two_b, blog_workload):
    params, shape = two_b
    full = plan.estimate(params, shape, blog_workload, Option("bf16-mixed"), reference=False)
    assert full.components["master weights (fp32)"] == 4 * params.total
    assert full.components[plan.GRADIENTS] == 4 * params.total
    assert full.components["AdamW state (2 x fp32, trainable)"] == 8 * params.total
    assert full.components["reference model (bf16)"] == 0  # kl_coef 0: not needed
    lora = plan.estimate(params, shape, blog_workload, Option("fp32", lora_rank=16), reference=True)
    n = plan.lora_params(shape, 16)
    assert lora.trainable == n
    assert lora.components["master weights (fp32)"] == 4 * (params.total + n)  # the base stays fp32, as loaded
    assert lora.components["AdamW state (2 x fp32, trainable)"] == 8 * n
    assert lora.components["reference model (fp32)"] == 0  # LoRA: the policy with its adapters off
    full_fp32 = plan.estimate(params, shape, blog_workload, Option("fp32"), reference=True)
    assert full_fp32.components["reference model (fp32)"] == 4 * params.total


def test_gradient_checkpointing_reduces_activations(two_b, blog_workload):
    params, shape = two_b
    for precision in plan.PRECISIONS:
        off = plan.activations(shape, blog_workload, Option(precision))
        on = plan.activations(shape, blog_workload, Option(precision, checkpointing=True))
        assert sum(on.values()) < sum(off.values()) / 5
        assert on[plan.RECOMPUTE] > 0 and off[plan.RECOMPUTE] == 0


def test_bf16_halves_the_compute_dtype_activations(two_b, blog_workload):
    _, shape = two_b

    def layer(precision, **change):
        return plan.text_layer_saved(dataclasses.replace(shape, **change), 32, 49, 296, precision)

    # the MLP's four intermediates (per unit of intermediate width) take half the bytes under bf16-mixed
    assert layer("bf16-mixed", intermediate=INTER + 1) - layer("bf16-mixed") == 32 * 49 * 4 * 2
    assert layer("fp32", intermediate=INTER + 1) - layer("fp32") == 32 * 49 * 4 * 4
    # so do the vision blocks under CPU autocast (on CUDA, layer_norm keeps its input in fp32)
    assert plan.vision_block_saved(shape, 748, 1, "bf16-mixed", "cpu") * 2 - 748 * 4 * 16 == \
        plan.vision_block_saved(shape, 748, 1, "fp32", "cpu")
    # in all, a bit more than half: the residual stream and the RMSNorms stay fp32, and each linear casts its input
    fp32 = sum(plan.activations(shape, blog_workload, Option("fp32")).values())
    bf16 = sum(plan.activations(shape, blog_workload, Option("bf16-mixed")).values())
    assert 0.5 < bf16 / fp32 < 0.65


def test_fit_table(two_b, blog_workload):
    params, shape = two_b
    assert plan.fits(int(0.9 * 24 * GiB), 24) and not plan.fits(int(0.9 * 24 * GiB) + 1, 24)
    blog = plan.estimate(params, shape, blog_workload, Option("bf16-mixed"), reference=False)
    assert 0.9 * 24 * GiB < blog.peak <= 0.9 * 80 * GiB
    assert blog.fits(80) and not blog.fits(24)
    row = plan.table_row("*", Option("bf16-mixed"), blog_workload, blog)
    assert row.split()[-3:] == ["no", "no", "yes"] and row.startswith("* bf16-mixed")
    # the peak is the end of the training forward (the last pass's gradients still allocated)
    assert blog.peak == blog.training_peak == blog.forward_end > blog.generation_peak


def _tiny_config(vocab=512):
    """A small Qwen2-VL with the 2B's structure (GQA, tied embedding, mrope, 14-px patches merged 2x2)."""
    from transformers import Qwen2VLConfig

    s = vocab - 14
    return Qwen2VLConfig(
        text_config=dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                         bos_token_id=s, eos_token_id=s + 2, pad_token_id=s, tie_word_embeddings=True),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=4, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=s + 12, video_token_id=s + 13, vision_start_token_id=s + 9, vision_end_token_id=s + 10,
        tie_word_embeddings=True)


def _tiny_policy(option: Option):
    """The small Qwen2-VL prepared as the trainer does, and a forward: (forward, model, config, workload)."""
    from transformers import Qwen2VLForConditionalGeneration

    from stages.vlm import qwen2vl as vlm

    config = _tiny_config()
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = plan.prepare_policy(Qwen2VLForConditionalGeneration(config).train(), option)
    w = Workload(prompts=2, group=3, max_new_tokens=6, patches=256, visual_tokens=64, text_tokens=20)  # 224 px
    batch, ids, mask = plan.standin_inputs(config, w, 224, 224)

    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=option.precision == "bf16-mixed"):
            return vlm.completion_logprobs(model, batch, ids, mask, group_size=w.group)

    return forward, model, config, w


def _saved_estimate(config, w, option):
    est = plan.estimate(plan.count_params(config), plan.shape_of(config), w, option, reference=False,
                        autocast_device="cpu")
    return sum(est.training[k] for k in plan.SAVED_PARTS)


@pytest.mark.parametrize("option", [Option("fp32"), Option("bf16-mixed"), Option("bf16-mixed", lora_rank=4)],
                         ids=["fp32", "bf16", "bf16-lora"])
def test_activation_count_matches_the_graph(option):
    """The bytes autograd keeps after the training forward of a small Qwen2-VL = the estimate (CPU autocast)."""
    forward, model, config, w = _tiny_policy(option)
    logp = forward()
    measured = plan._saved_bytes(logp.grad_fn, {p.untyped_storage().data_ptr() for p in model.parameters()})
    # in fp32 the conv saves pixel_values itself, which the estimate counts and the graph walk sees as well
    assert measured == pytest.approx(_saved_estimate(config, w, option), rel=0.02)


def test_activation_count_under_checkpointing():
    """Under checkpointing saved tensors are placeholders: count what is allocated when the forward returns."""
    from torch.profiler import ProfilerActivity, profile, record_function

    option = Option("bf16-mixed", checkpointing=True)
    forward, _, config, w = _tiny_policy(option)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function("plan:forward"):
            logp = forward()
    alive = plan._allocation_levels(prof, "plan:forward")["plan:forward"][1]
    assert logp.requires_grad
    # the estimate counts every bf16 weight copy, of which those of the checkpointed layers die with autocast's cache
    assert alive == pytest.approx(_saved_estimate(config, w, option), rel=0.1)


def test_plan_command(tmp_path, repo_root):
    from typer.testing import CliRunner

    from stages.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["plan", "--help"])
    assert result.exit_code == 0 and "--measure" in result.output and "--model-dir" in result.output
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "--params", str(repo_root / "params.yaml"), "--profile", "blog",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "PEAK OF THE STEP" in result.output and "24 GB" in result.output
    data = json.loads(out.read_text())
    assert data["params"]["total"] == 2_208_985_600 and data["workload"]["rows"] == 32
    assert sum(row["current"] for row in data["options"]) == 1
    bad = runner.invoke(app, ["plan", "--params", str(repo_root / "params.yaml"), "--reference", "maybe"])
    assert bad.exit_code == 2


def test_disk_needs_by_hand():
    """2.2B parameters, full fine-tune, 12 cells, 8 GB of raw data, 2 cells training at once: a checkpoint is
    4 + 8 bytes a parameter (fp32 weights, AdamW's two moments) = 26.4 GB; models are stored in bf16 (4.4 GB)."""
    from stages.plan import ParamCount, checkpoint_bytes, disk_needs

    params = ParamCount(vision=600_000_000, language=1_300_000_000, embedding=300_000_000, matmul=0,
                        text_matmul_per_layer=0, qkv_per_layer=0, tied=True)
    assert checkpoint_bytes(params, params.total) == 12 * 2_200_000_000
    assert checkpoint_bytes(params, 10_000_000) == 12 * 10_000_000  # LoRA: the adapters and their moments
    need = disk_needs(params, params.total, cells=12, raw_data=8 * 10**9, workers=2)
    model = 4_400_000_000
    assert need["base model (data/raw copy + models/base)"] == 2 * model
    assert need["trained cells (models/CELL, 12 x bf16)"] == 12 * model
    assert need["DVC cache (a copy of datasets, base and cells)"] == 8 * 10**9 + 13 * model
    assert need["checkpoints at their peak (2 cell(s) training at once)"] == 2 * 26_400_000_000
    assert need["total"] == 2 * 8 * 10**9 + 2 * model + 12 * model + 8 * 10**9 + 13 * model + 2 * 26_400_000_000


def test_plan_prints_the_disk_of_the_blog_profile(repo_root):
    from typer.testing import CliRunner

    from stages.cli import app

    result = CliRunner().invoke(app, ["plan", "--params", str(repo_root / "params.yaml"), "--profile", "blog"])
    assert result.exit_code == 0, result.output
    assert "disk for the grid (12 cells; execution.checkpoint_every = 100)" in result.output
    assert "only the newest kept" in result.output and "hardlink,symlink" in result.output
