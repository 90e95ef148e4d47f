"""The Qwen2-VL module: build, save/reload, prompting, group expansion, generation log-probs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stages import prompts
from stages.vlm import qwen2vl as vlm


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (112, 112, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def two_prompt_batch(tiny_processor):
    """Two different images, two prompt styles: prompts of different lengths (left padding matters)."""
    texts = [
        vlm.chat_prompt(tiny_processor, prompts.build_messages("default", "How many items are there in the image?")),
        vlm.chat_prompt(tiny_processor, prompts.build_messages("r1v", "How many different items are there in the image?")),
    ]
    return dict(vlm.encode_prompts(tiny_processor, [_image(1), _image(2)], texts))


def test_tokenizer_has_qwen_special_tokens_and_template(tiny_processor):
    tok = tiny_processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in vlm.SPECIAL_TOKENS]
    assert len(set(ids)) == 14 and tok.unk_token_id not in ids[1:]
    text = vlm.chat_prompt(tiny_processor, prompts.build_messages("default", "How many?"))
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>How many?" in text
    assert text.endswith("<|im_start|>assistant\n")
    # round trip of answer text, digits and tags included
    answer = "<think>I count three.</think><answer>3</answer>"
    assert tok.decode(tok(answer, add_special_tokens=False)["input_ids"]) == answer


def test_prompt_batch_shapes(two_prompt_batch):
    b = two_prompt_batch
    assert b["input_ids"].shape == b["attention_mask"].shape == b["mm_token_type_ids"].shape
    assert b["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]  # 112 px -> 8x8 patches
    assert b["pixel_values"].shape[0] == 128
    assert (b["attention_mask"][0] == 0).any()  # the shorter default prompt is left-padded
    assert b["attention_mask"][:, -1].all()


def test_group_expansion_keeps_each_image_with_its_prompt(two_prompt_batch, tiny_model):
    G = 3
    g = vlm.expand_to_groups(two_prompt_batch, G)
    assert g["input_ids"].shape[0] == 2 * G
    blocks = torch.split(g["pixel_values"], vlm.patches_per_image(g["image_grid_thw"]))
    orig = torch.split(two_prompt_batch["pixel_values"], 64)
    for row in range(2 * G):
        assert torch.equal(blocks[row], orig[row // G])
    # the logits of every group row equal those of its prompt alone; a naive pixel repeat breaks this
    with torch.no_grad():
        ref = tiny_model(**two_prompt_batch).logits[:, -1]
        out = tiny_model(**g).logits[:, -1]
        naive = dict(g, pixel_values=two_prompt_batch["pixel_values"].repeat(G, 1))
        wrong = tiny_model(**naive).logits[:, -1]
    torch.testing.assert_close(out, ref.repeat_interleave(G, dim=0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(wrong, ref.repeat_interleave(G, dim=0), atol=1e-3)


def _naive_logprobs(model, batch, group_size, ids, mask):
    """The reference: every prompt repeated per row (its own image patches), one forward of prompt + completion."""
    g = vlm.expand_to_groups(batch, group_size)
    t = ids.shape[1]
    out = model(
        input_ids=torch.cat([g["input_ids"], ids], dim=1),
        attention_mask=torch.cat([g["attention_mask"], mask.long()], dim=1),
        mm_token_type_ids=torch.cat([g["mm_token_type_ids"], torch.zeros_like(ids, dtype=g["mm_token_type_ids"].dtype)],
                                    dim=1),
        pixel_values=g["pixel_values"],
        image_grid_thw=g["image_grid_thw"],
        logits_to_keep=t + 1,
        use_cache=False,
    )
    return out.logits[:, :-1], vlm.selective_log_softmax(out.logits[:, :-1], ids).masked_fill(~mask, 0.0)


@pytest.fixture(scope="module")
def group_completions(tiny_processor):
    """3 completions of different lengths for each of the two prompts (G = 3): right padding matters."""
    texts = ["<think>one two</think><answer>3</answer>", "4", "There are five.",
             "<answer>2</answer>", "I see many different items in it.", "7"]
    return vlm.tokenize_completions(tiny_processor.tokenizer, texts)


def test_shared_prompt_logprobs_and_gradients_equal_the_naive_forward(two_prompt_batch, group_completions, tiny_model):
    ids, mask = group_completions
    names, params = zip(*[(n, p) for n, p in tiny_model.named_parameters() if p.requires_grad], strict=True)
    weights = torch.randn(ids.shape, generator=torch.Generator().manual_seed(0))  # a loss touching every token

    def logp_and_grads(fn):
        logp = fn()
        return logp.detach(), torch.autograd.grad((logp * weights).sum(), params)

    ref_logp, ref_grads = logp_and_grads(lambda: _naive_logprobs(tiny_model, two_prompt_batch, 3, ids, mask)[1])
    logp, grads = logp_and_grads(lambda: vlm.completion_logprobs(tiny_model, two_prompt_batch, ids, mask, group_size=3))
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=0)
    assert (logp[~mask] == 0).all()
    for name, a, b in zip(names, grads, ref_grads, strict=True):
        # relative to the tensor's largest gradient: summing G rows' gradients in another order is rounding
        torch.testing.assert_close(a, b, atol=1e-5 * b.abs().max().item(), rtol=0,
                                   msg=lambda m, name=name: f"{name}: {m}")
    assert all(g.abs().sum() > 0 for n, g in zip(names, grads, strict=True) if n.startswith("model.visual."))
    # a subset of the rows (the injected ones) attends to the right prompt
    rows = [1, 3, 4]
    with torch.no_grad():
        sub = vlm.completion_logprobs(tiny_model, two_prompt_batch, ids[rows], mask[rows], group_size=3, rows=rows)
    torch.testing.assert_close(sub, ref_logp[rows], atol=1e-5, rtol=0)


def test_stale_rope_deltas_on_the_model_do_not_leak(two_prompt_batch, group_completions, tiny_model):
    ids, mask = group_completions
    with torch.no_grad():
        clean = vlm.completion_logprobs(tiny_model, two_prompt_batch, ids, mask, group_size=3)
        tiny_model.model.rope_deltas = torch.full((6, 1), 17)  # what an earlier call on other prompts leaves
        try:
            stale = vlm.completion_logprobs(tiny_model, two_prompt_batch, ids, mask, group_size=3)
        finally:
            tiny_model.model.rope_deltas = None
    torch.testing.assert_close(stale, clean, atol=0, rtol=0)


def test_group_generation_logprobs_equal_the_training_forward(two_prompt_batch, tiny_model, tiny_processor):
    G = 3
    cfg = vlm.sampling_config(tiny_processor.tokenizer, max_new_tokens=12)
    seeds = [11, 12, 13, 21, 22, 23]
    gen = vlm.generate(tiny_model, tiny_processor, two_prompt_batch, cfg, row_seeds=seeds, group_size=G)
    assert gen.completion_ids.shape == gen.logprobs.shape and gen.completion_ids.shape[0] == 2 * G
    with torch.no_grad():
        _, forward = _naive_logprobs(tiny_model, two_prompt_batch, G, gen.completion_ids, gen.completion_mask)
    torch.testing.assert_close(forward, gen.logprobs, atol=1e-5, rtol=0)
    # suppressed special tokens never appear, end tokens may
    specials = {tiny_processor.tokenizer.convert_tokens_to_ids(t) for t in vlm.SPECIAL_TOKENS}
    ends = set(vlm.end_token_ids(tiny_processor.tokenizer))
    sampled = set(gen.completion_ids[gen.completion_mask].tolist())
    assert not (sampled & (specials - ends))
    # a row's completion depends on its seed and its prompt only: the first (left-padded) prompt alone, without
    # its padding and the other rows, samples the same tokens with the same seeds
    first = int(two_prompt_batch["attention_mask"][0].argmax())  # its first real token
    alone = {k: two_prompt_batch[k][:1, first:] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
    alone.update(pixel_values=two_prompt_batch["pixel_values"][:64],
                 image_grid_thw=two_prompt_batch["image_grid_thw"][:1])
    solo = vlm.generate(tiny_model, tiny_processor, alone, cfg, row_seeds=seeds[:G], group_size=G)
    width = solo.completion_ids.shape[1]
    assert torch.equal(solo.completion_ids, gen.completion_ids[:G, :width])
    assert not gen.completion_mask[:G, width:].any()


def test_rows_that_end_leave_the_batch_without_changing_the_others(two_prompt_batch, tiny_model, tiny_processor):
    """Rows that have ended are dropped from the decode batch: every row still samples exactly what it samples
    alone (its prompt without padding, its seed), with the same log-probs, and rows end at different steps."""
    tok = tiny_processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")

    def favour_the_end(_module, _inputs, logits):  # the random tiny model would rarely end on its own
        return logits.index_add(-1, torch.tensor([end]), torch.full((*logits.shape[:-1], 1), 4.0))

    G, seeds = 4, [31, 32, 33, 34, 41, 42, 43, 44]
    cfg = vlm.sampling_config(tok, max_new_tokens=16)
    handle = tiny_model.lm_head.register_forward_hook(favour_the_end)
    try:
        gen = vlm.generate(tiny_model, tiny_processor, two_prompt_batch, cfg, row_seeds=seeds, group_size=G)
        lengths = gen.completion_mask.sum(1)
        assert len(set(lengths.tolist())) > 2 and int(lengths.min()) < 16  # rows ended at different steps
        for p in range(2):
            first = int(two_prompt_batch["attention_mask"][p].argmax())  # its first real token
            alone = {k: two_prompt_batch[k][p : p + 1, first:] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
            alone.update(pixel_values=two_prompt_batch["pixel_values"][64 * p : 64 * (p + 1)],
                         image_grid_thw=two_prompt_batch["image_grid_thw"][p : p + 1])
            for i in range(G):
                row = p * G + i
                solo = vlm.generate(tiny_model, tiny_processor, alone, cfg, row_seeds=[seeds[row]])
                width = solo.completion_ids.shape[1]
                assert torch.equal(solo.completion_ids[0], gen.completion_ids[row, :width])
                assert not gen.completion_mask[row, width:].any()
                torch.testing.assert_close(solo.logprobs[0], gen.logprobs[row, :width], atol=1e-5, rtol=0)
    finally:
        handle.remove()


def test_greedy_generation_takes_the_argmax_of_the_allowed_tokens(two_prompt_batch, tiny_model, tiny_processor):
    tok = tiny_processor.tokenizer
    cfg = vlm.sampling_config(tok, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    gen = vlm.generate(tiny_model, tiny_processor, two_prompt_batch, cfg, want_logprobs=False)
    assert gen.logprobs is None and gen.completion_mask.all()  # no end token before min_new_tokens
    with torch.no_grad():
        logits, _ = _naive_logprobs(tiny_model, two_prompt_batch, 1, gen.completion_ids, gen.completion_mask)
    logits[..., cfg.suppress_tokens + cfg.eos_token_id] = float("-inf")
    assert torch.equal(gen.completion_ids, logits.argmax(-1))


def test_completion_mask_stops_after_the_first_end_token():
    ids = torch.tensor([[5, 6, 2, 9, 9], [5, 2, 2, 0, 0], [7, 7, 7, 7, 7]])
    mask = vlm.completion_mask_from_ids(ids, [2])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_selective_log_softmax_matches_full_log_softmax():
    logits = torch.randn(5, 7, 33)
    index = torch.randint(0, 33, (5, 7))
    full = torch.log_softmax(logits, -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(vlm.selective_log_softmax(logits, index, chunk=2), full)


def test_save_and_reload_give_identical_logits(tmp_path, tiny_model, tiny_processor, two_prompt_batch):
    vlm.save_model_dir(tiny_model, tiny_processor, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert not list((tmp_path / "m").glob("*.bin"))
    model, processor = vlm.load_model(tmp_path / "m")
    assert processor.tokenizer.padding_side == "left"
    assert processor.image_processor is not None
    with torch.no_grad():
        a = tiny_model(**two_prompt_batch).logits
        b = model.eval()(**two_prompt_batch).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)
