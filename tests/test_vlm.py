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


def test_generation_logprobs_equal_the_training_forward(two_prompt_batch, tiny_model, tiny_processor):
    g = vlm.expand_to_groups(two_prompt_batch, 2)
    cfg = vlm.sampling_config(tiny_processor.tokenizer, max_new_tokens=12)
    torch.manual_seed(0)
    gen = vlm.generate(tiny_model, tiny_processor, g, cfg)
    assert gen.completion_ids.shape == gen.logprobs.shape
    with torch.no_grad():
        forward = vlm.completion_logprobs(tiny_model, g, gen.completion_ids, gen.completion_mask)
    torch.testing.assert_close(forward, gen.logprobs, atol=1e-4, rtol=0)
    # suppressed special tokens never appear, end tokens may
    specials = {tiny_processor.tokenizer.convert_tokens_to_ids(t) for t in vlm.SPECIAL_TOKENS}
    ends = set(vlm.end_token_ids(tiny_processor.tokenizer))
    sampled = set(gen.completion_ids[gen.completion_mask].tolist())
    assert not (sampled & (specials - ends))


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
