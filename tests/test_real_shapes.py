"""The multimodal traps of peer projects, at the REAL image sizes of the blog profile.

tests/test_vlm.py uses 112x112 images (16 visual tokens each). The real study feeds 480x320 CLEVR PNGs (some RGBA)
through Qwen2-VL-2B-Instruct's image processor (min_pixels 3136, max_pixels 12845056): 480x320 -> 476x308 ->
a 22x34 patch grid -> 187 visual tokens. Here the tiny model (its vision tower takes any number of patches) runs
with that image processor, so every batch below has real patch counts, real visual-token counts and prompts of
both styles (different lengths, so left padding):

- R1-V's batch > 1 bug (StarsfieldAI/R1-V issue #4; PRs #49 and #54): ``pixel_values`` (sum of patches, dim)
  repeated as a whole pairs the G rows of prompt 0 with the other prompts' images (l1+l2+l1+l2 instead of
  l1+l1+l2+l2);
- TRL issue #5785: a padding-side mismatch silently corrupts the multimodal context;
- images of different sizes in one batch (patch blocks of different lengths);
- RGBA PNGs (the real dataset has some) and the blog's parquet layout.

Every comparison is against the same prompt run ALONE (a batch of one: no padding, no other image).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from stages import prompts
from stages.counting.questions import CLEVR_FEATURES, CLEVR_PROBLEM, format_solution, load_counting_split, png_bytes
from stages.counting.sources import fetch_clevr_blog
from stages.scenes.clevr import render_clevr_scene
from stages.vlm import qwen2vl as vlm

QUESTION = CLEVR_PROBLEM  # "How many items are there in the image?"
ATOL = 1e-5  # float32: a prompt batched with others vs the same prompt alone


# ----------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def real_processor(tiny_processor):
    """The tiny tokenizer with Qwen2-VL-2B-Instruct's image processor settings (real patch counts)."""
    tok = tiny_processor.tokenizer
    assert tok.padding_side == "left"
    return vlm.VLProcessor(image_processor=vlm.real_image_processor(), tokenizer=tok, chat_template=tok.chat_template)


def clevr_image(seed: int, n_objects: int, size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A CLEVR-like scene rendered square (the shorter side) and pasted centred on a grey canvas of ``size``."""
    w, h = size
    side = min(w, h)
    scene, objects = render_clevr_scene(np.random.default_rng(seed), n_objects, side)
    assert len(objects) == n_objects
    canvas = Image.new("RGB", size, (128, 128, 128))
    canvas.paste(scene, ((w - side) // 2, (h - side) // 2))
    return canvas


def rgba_png(image: Image.Image, translucent: bool) -> bytes:
    """PNG bytes in mode RGBA: fully opaque (as CLEVR's own RGBA PNGs), or with a translucent / transparent band."""
    alpha = np.full((image.height, image.width), 255, dtype=np.uint8)
    if translucent:
        alpha[:, : image.width // 4] = 0
        alpha[:, image.width // 4 : image.width // 2] = 100
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha))
    data = png_bytes(rgba)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGBA"
    return data


def read_png(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


def prompt_text(processor, style: str) -> str:
    return vlm.chat_prompt(processor, prompts.build_messages(style, QUESTION))


def encode(processor, images, styles) -> dict:
    return dict(vlm.encode_prompts(processor, images, [prompt_text(processor, s) for s in styles]))


def image_pad_counts(processor, batch) -> list[int]:
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return (batch["input_ids"] == pad).sum(dim=1).tolist()


def completions(processor, n_rows: int):
    """``n_rows`` completions of different lengths (right padding inside the completions matters too)."""
    texts = ["<think>I count the objects in the image. There are three.</think><answer>3</answer>", "4",
             "There are five objects in the image.", "<answer>2</answer>", "I count seven objects.", "7",
             "The answer is 6.", "<think>The image shows two objects.</think><answer>2</answer>"]
    return vlm.tokenize_completions(processor.tokenizer, texts[:n_rows])


def one_forward_logprobs(model, batch, ids, mask, group_size):
    """A second reference, with no prefill / KV cache / explicit positions: every prompt repeated per row with its
    own patches, prompt + completion in ONE forward, the model computing its own 3-D positions. At 22x34 grids
    (not square, unlike 112 px images) this also checks the height / width axes of the mrope positions."""
    g = vlm.expand_to_groups(batch, group_size)
    with torch.no_grad():
        out = model(
            input_ids=torch.cat([g["input_ids"], ids], dim=1),
            attention_mask=torch.cat([g["attention_mask"], mask.long()], dim=1),
            mm_token_type_ids=torch.cat([g["mm_token_type_ids"], torch.zeros_like(ids)], dim=1),
            pixel_values=g["pixel_values"],
            image_grid_thw=g["image_grid_thw"],
            logits_to_keep=ids.shape[1] + 1,
            use_cache=False,
        )
    return vlm.selective_log_softmax(out.logits[:, :-1], ids).masked_fill(~mask, 0.0)


def logprobs_alone(model, processor, image, style, ids, mask, group_size):
    """The reference: one prompt, encoded by itself (batch of one, no padding), its G completion rows."""
    with torch.no_grad():
        return vlm.completion_logprobs(model, encode(processor, [image], [style]), ids, mask, group_size=group_size)


# ----------------------------------------------------------------------------------------------------------
# 1. visual token counts, RGBA


def test_a_480x320_image_is_187_visual_tokens(real_processor):
    assert vlm.visual_tokens(480, 320) == 187
    assert vlm.visual_tokens(320, 480) == 187
    assert vlm.visual_tokens(640, 480) == 391  # 644x476 -> 46x34 patches
    b = encode(real_processor, [clevr_image(0, 5)], ["default"])
    assert b["image_grid_thw"].tolist() == [[1, 22, 34]]  # (t, h, w) patches: 308 / 14, 476 / 14
    assert b["pixel_values"].shape == (22 * 34, 3 * 2 * 14 * 14)  # 748 patches of C*T*14*14
    assert vlm.patches_per_image(b["image_grid_thw"]) == [748]
    assert image_pad_counts(real_processor, b) == [187]  # 748 / (2x2 merge)
    pad = real_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (b["mm_token_type_ids"] == 1).sum() == 187
    assert torch.equal(b["mm_token_type_ids"] == 1, b["input_ids"] == pad)


def test_rgba_images_lose_their_alpha_like_the_data_path(real_processor):
    """``encode_prompts`` calls ``img.convert("RGB")``: alpha is DROPPED (the RGB values under it are kept), the
    same as the data path (questions._rgb_bytes / _decode_image). transformers' own ``convert_to_rgb`` (what
    the image processor would do with an RGBA image given to it directly) composites onto white instead: for
    CLEVR's fully opaque RGBA PNGs both agree; for translucent pixels encode_prompts' behaviour wins."""
    base = clevr_image(1, 4)

    def pixels(images):
        return encode(real_processor, images, ["default"] * len(images))["pixel_values"]

    opaque = read_png(rgba_png(base, translucent=False))
    clear = read_png(rgba_png(base, translucent=True))
    assert opaque.mode == clear.mode == "RGBA" and opaque.size == clear.size == (480, 320)

    # alpha dropped: the RGBA image encodes exactly as its RGB conversion, which is the original RGB image
    assert torch.equal(pixels([clear]), pixels([clear.convert("RGB")]))
    assert torch.equal(pixels([clear]), pixels([base]))
    assert torch.equal(pixels([opaque]), pixels([base]))

    # the image processor given the RGBA image itself composites onto white: the same when opaque only
    def direct(image):
        return real_processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]

    assert torch.equal(direct(opaque), pixels([base]))
    assert not torch.allclose(direct(clear), pixels([clear]), atol=1e-3)


# ----------------------------------------------------------------------------------------------------------
# 2. batch > 1 with images (R1-V issue #4)


@pytest.fixture(scope="module")
def three_images():
    return [clevr_image(10, 2), clevr_image(11, 5), clevr_image(12, 8)]  # different counts, all 480x320


def test_batched_prompts_keep_their_own_images(real_processor, tiny_model, three_images):
    G = 2
    styles = ["default"] * 3
    batch = encode(real_processor, three_images, styles)
    assert batch["image_grid_thw"].tolist() == [[1, 22, 34]] * 3
    assert image_pad_counts(real_processor, batch) == [187] * 3

    # each image's block of pixel_values is the block it has when encoded alone, and group expansion repeats it
    # for its own prompt's G rows only
    alone = [encode(real_processor, [img], ["default"]) for img in three_images]
    blocks = torch.split(batch["pixel_values"], vlm.patches_per_image(batch["image_grid_thw"]))
    for p in range(3):
        assert torch.equal(blocks[p], alone[p]["pixel_values"])
    g = vlm.expand_to_groups(batch, G)
    assert g["input_ids"].shape[0] == g["image_grid_thw"].shape[0] == 3 * G
    g_blocks = torch.split(g["pixel_values"], vlm.patches_per_image(g["image_grid_thw"]))
    for row in range(3 * G):
        assert torch.equal(g_blocks[row], alone[row // G]["pixel_values"])
        assert torch.equal(g["input_ids"][row], batch["input_ids"][row // G])

    # every row's log-probs from the batched shared-prompt path equal its prompt run alone
    ids, mask = completions(real_processor, 3 * G)
    with torch.no_grad():
        batched = vlm.completion_logprobs(tiny_model, batch, ids, mask, group_size=G)
    for p in range(3):
        rows = slice(p * G, (p + 1) * G)
        ref = logprobs_alone(tiny_model, real_processor, three_images[p], "default", ids[rows], mask[rows], G)
        torch.testing.assert_close(batched[rows], ref, atol=ATOL, rtol=0, msg=lambda m, p=p: f"prompt {p}: {m}")

    # the trap is real at these sizes: pairing rows with a plain pixel repeat (R1-V #4) changes the prompt logits
    with torch.no_grad():
        right = tiny_model(**g).logits[:, -1]
        naive = tiny_model(**dict(g, pixel_values=batch["pixel_values"].repeat(G, 1))).logits[:, -1]
        ref_last = torch.cat([tiny_model(**a).logits[:, -1] for a in alone]).repeat_interleave(G, dim=0)
    torch.testing.assert_close(right, ref_last, atol=ATOL, rtol=0)
    assert not torch.allclose(naive, ref_last, atol=1e-3)


# ----------------------------------------------------------------------------------------------------------
# 3. padding side (TRL issue #5785)


def test_mixed_prompt_lengths_are_left_padded_and_padding_changes_nothing(real_processor, tiny_model, three_images):
    G = 2
    images, styles = three_images[:2], ["default", "r1v"]  # the default prompt is much shorter
    batch = encode(real_processor, images, styles)
    tok = real_processor.tokenizer
    assert tok.padding_side == "left"
    lengths = [len(encode(real_processor, [img], [s])["input_ids"][0]) for img, s in zip(images, styles, strict=True)]
    assert lengths[0] < lengths[1] == batch["input_ids"].shape[1]
    n_pad = lengths[1] - lengths[0]
    # pads at the START of the short prompt, none in the long one; every prompt ends at the last column
    assert (batch["input_ids"][0, :n_pad] == tok.pad_token_id).all()
    assert batch["attention_mask"][0].tolist() == [0] * n_pad + [1] * lengths[0]
    assert batch["attention_mask"][1].all() and batch["attention_mask"][:, -1].all()
    assert image_pad_counts(real_processor, batch) == [187, 187]

    ids, mask = completions(real_processor, 2 * G)
    with torch.no_grad():
        mixed = vlm.completion_logprobs(tiny_model, batch, ids, mask, group_size=G)
    short_alone = logprobs_alone(tiny_model, real_processor, images[0], "default", ids[:G], mask[:G], G)
    long_alone = logprobs_alone(tiny_model, real_processor, images[1], "r1v", ids[G:], mask[G:], G)
    torch.testing.assert_close(mixed[:G], short_alone, atol=ATOL, rtol=0)
    torch.testing.assert_close(mixed[G:], long_alone, atol=ATOL, rtol=0)

    # the trap is real: the same batch RIGHT padded leaves the long prompt intact and corrupts the short one
    # (its "last prompt token" is a pad and its completion follows the pads)
    right = dict(real_processor(images=[img.convert("RGB") for img in images],
                                text=[prompt_text(real_processor, s) for s in styles], padding=True,
                                padding_side="right", return_tensors="pt", return_mm_token_type_ids=True))
    assert right["attention_mask"][0, -1] == 0 and tok.padding_side == "left"  # the kwarg did not stick
    with torch.no_grad():
        wrong = vlm.completion_logprobs(tiny_model, right, ids, mask, group_size=G)
    torch.testing.assert_close(wrong[G:], long_alone, atol=ATOL, rtol=0)
    assert not torch.allclose(wrong[:G], short_alone, atol=1e-3)


# ----------------------------------------------------------------------------------------------------------
# 4. images of different sizes in one batch


def test_images_of_different_sizes_in_one_batch(real_processor, tiny_model):
    G = 2
    sizes = [(480, 320), (320, 480), (640, 480)]
    images = [clevr_image(20 + i, 3 + i, size) for i, size in enumerate(sizes)]
    styles = ["default", "r1v", "default"]
    batch = encode(real_processor, images, styles)
    expected_tokens = [vlm.visual_tokens(w, h) for w, h in sizes]
    assert expected_tokens == [187, 187, 391]
    assert batch["image_grid_thw"].tolist() == [[1, 22, 34], [1, 34, 22], [1, 34, 46]]
    assert vlm.patches_per_image(batch["image_grid_thw"]) == [4 * n for n in expected_tokens]
    assert batch["pixel_values"].shape[0] == 4 * sum(expected_tokens)
    assert image_pad_counts(real_processor, batch) == expected_tokens

    alone = [encode(real_processor, [img], [s]) for img, s in zip(images, styles, strict=True)]
    g = vlm.expand_to_groups(batch, G)
    g_blocks = torch.split(g["pixel_values"], vlm.patches_per_image(g["image_grid_thw"]))
    assert [len(b) for b in g_blocks] == [4 * n for n in expected_tokens for _ in range(G)]
    for row in range(3 * G):
        assert torch.equal(g_blocks[row], alone[row // G]["pixel_values"])

    ids, mask = completions(real_processor, 3 * G)
    with torch.no_grad():
        batched = vlm.completion_logprobs(tiny_model, batch, ids, mask, group_size=G)
    for p in range(3):
        rows = slice(p * G, (p + 1) * G)
        ref = logprobs_alone(tiny_model, real_processor, images[p], styles[p], ids[rows], mask[rows], G)
        torch.testing.assert_close(batched[rows], ref, atol=ATOL, rtol=0, msg=lambda m, p=p: f"prompt {p}: {m}")
        one = one_forward_logprobs(tiny_model, alone[p], ids[rows], mask[rows], G)
        torch.testing.assert_close(batched[rows], one, atol=ATOL, rtol=0, msg=lambda m, p=p: f"prompt {p}, 1 fwd: {m}")


# ----------------------------------------------------------------------------------------------------------
# 5. greedy generation at real sizes


def test_greedy_generation_of_a_batch_equals_each_prompt_alone(real_processor, tiny_model, three_images):
    G = 2
    images, styles = three_images[1:], ["r1v", "default"]  # the second prompt is the left-padded one
    batch = encode(real_processor, images, styles)
    assert (batch["attention_mask"][1] == 0).any()
    cfg = vlm.sampling_config(real_processor.tokenizer, max_new_tokens=5, do_sample=False)
    gen = vlm.generate(tiny_model, real_processor, batch, cfg, group_size=G)
    assert gen.completion_ids.shape[0] == 2 * G and gen.completion_ids.shape[1] <= 5
    for p in range(2):
        solo = vlm.generate(tiny_model, real_processor, encode(real_processor, [images[p]], [styles[p]]), cfg,
                            group_size=G)
        width = solo.completion_ids.shape[1]
        rows = slice(p * G, (p + 1) * G)
        assert torch.equal(gen.completion_ids[rows, :width], solo.completion_ids), f"prompt {p}"
        assert not gen.completion_mask[rows, width:].any()
        torch.testing.assert_close(gen.logprobs[rows, :width], solo.logprobs, atol=ATOL, rtol=0)
        assert torch.equal(gen.completion_ids[p * G], gen.completion_ids[p * G + 1])  # greedy: G equal rows
    # the training forward scores the generated tokens as the generator did
    with torch.no_grad():
        forward = vlm.completion_logprobs(tiny_model, batch, gen.completion_ids, gen.completion_mask, group_size=G)
    torch.testing.assert_close(forward, gen.logprobs, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# 6. the blog's data path: RGBA PNGs in leonardPKU/clevr_cogen_a_train's parquet layout


def _write_plain_parquet(path, images, counts):
    """Parquet as pyarrow writes it, without the datasets metadata: image is struct<bytes, path>."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([{"bytes": b, "path": None} for b in images], type=image_type),
        "problem": [CLEVR_PROBLEM] * len(images),
        "solution": [format_solution(c) for c in counts],
    })
    pq.write_table(table, path)


def _write_datasets_parquet(path, images, counts):
    """Parquet as the hub copy is written (datasets' Image feature in the schema metadata)."""
    from datasets import Dataset

    Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in images],
                       "problem": [CLEVR_PROBLEM] * len(images),
                       "solution": [format_solution(c) for c in counts]},
                      features=CLEVR_FEATURES).to_parquet(str(path))


@pytest.mark.parametrize("writer", [_write_plain_parquet, _write_datasets_parquet], ids=["pyarrow", "datasets"])
def test_rgba_parquet_rows_load_as_rgb_480x320(tmp_path, writer, real_processor):
    from stages.counting.questions import save_dataset_atomic

    counts = [3, 6, 10]
    bases = [clevr_image(30 + i, c) for i, c in enumerate(counts)]
    pngs = [rgba_png(b, translucent=(i == 1)) for i, b in enumerate(bases)]  # row 1 has see-through pixels
    raw = tmp_path / "raw"
    (raw / "data").mkdir(parents=True)
    writer(raw / "data" / "train-00000-of-00001.parquet", pngs, counts)

    dd = fetch_clevr_blog(raw_dir=raw, eval_rows=1, cache_dir=tmp_path / "cache")
    assert (len(dd["train"]), len(dd["heldout"])) == (2, 1)  # the last row is held out
    assert dd["train"].column_names == ["image", "problem", "solution"]
    save_dataset_atomic(dd, tmp_path / "clevr")

    examples = [*load_counting_split(tmp_path / "clevr", "clevr", split="train"),
                *load_counting_split(tmp_path / "clevr", "clevr", split="heldout")]
    assert [e.answer for e in examples] == counts
    assert [e.row for e in examples] == [0, 1, 0]
    for ex, base, png in zip(examples, bases, pngs, strict=True):
        assert ex.question == CLEVR_PROBLEM
        assert ex.image.mode == "RGB" and ex.image.size == (480, 320)
        # alpha dropped (not composited): the RGB under the alpha, as encode_prompts does
        assert np.array_equal(np.asarray(ex.image), np.asarray(read_png(png).convert("RGB")))
        assert np.array_equal(np.asarray(ex.image), np.asarray(base))
    b = encode(real_processor, [e.image for e in examples], ["default", "r1v", "default"])
    assert image_pad_counts(real_processor, b) == [187] * 3
