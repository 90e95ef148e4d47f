"""The one place that knows Qwen2-VL: building the tiny model, loading, prompting, generation, log-probs.

Both profiles go through these functions: the mini profile's tiny model is a real
``Qwen2VLForConditionalGeneration`` saved with ``save_pretrained``, so one loader serves the hub model too.

Traps handled here (each reproduced on transformers 5.23, torch 2.13, and tested in tests/test_vlm.py):
- a forward with ``image_grid_thw`` needs ``mm_token_type_ids``; completion tokens get zeros;
- expanding a prompt to its group repeats each image's own block of patches (a plain
  ``pixel_values.repeat`` silently pairs the wrong images);
- generation needs left padding, and ``padding_side`` is not saved: it is set after every load;
- a sampled ``<|image_pad|>`` breaks the next forward: every special token but the end tokens is suppressed;
- a group's G rows share one prompt: it runs once (vision tower once per image) and its KV cache is fanned out
  to the rows, so 3-D mrope positions are computed here and always passed; left to itself the model reuses
  ``rope_deltas`` cached by an earlier call on other prompts;
- generate's default ``top_k=50`` is not the blog's sampling: ``top_k=0``;
- under activation checkpointing transformers drops the KV cache from training forwards (a checkpointed layer
  runs again in the backward and would append its keys twice), which would leave the completion tokens attending
  to no prompt: the prompts' cache is a :class:`ReplayableCache`, whose replays see it as it was and write nothing;
- ``AutoProcessor`` may need torchvision (video processor): the processor is assembled from the tokenizer
  and the PIL image processor, with no video processor.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

# Qwen2-VL's 14 special tokens, in the order of the real tokenizer (ids follow the BPE vocabulary).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
END_TOKENS = ("<|im_end|>", "<|endoftext|>")

# Qwen2-VL-2B-Instruct's chat template, verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ----------------------------------------------------------------------------------------------------------
# building the mini world's tokenizer, processor and model


def build_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` with Qwen2-VL's special tokens, as ``Qwen2Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    vocab = bpe.get_vocab()
    return qwen2_tokenizer(vocab, _merges(bpe))


def qwen2_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A ``Qwen2Tokenizer`` over a byte-level BPE ``vocab``/``merges`` with Qwen2-VL's special tokens appended (in
    the real order), its end and pad tokens, chat template and left padding."""
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, errors="replace")
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def _merges(bpe) -> list[tuple[str, str]]:
    """The trained BPE merges as (left, right) pairs, read from the tokenizer's JSON form."""
    import json

    merges = json.loads(bpe.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def build_image_processor(image_size: int) -> Qwen2VLImageProcessorPil:
    """The PIL image processor pinned to ``image_size`` squares (112 px -> 8x8 patches -> 16 visual tokens)."""
    pixels = image_size * image_size
    return Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels)


# Qwen2-VL-2B-Instruct's published shape (config.json) and image processor (preprocessor_config.json).
# The blog profile's stand-in (``vlm-grpo rehearsal-inputs``) and ``vlm-grpo plan`` build from these.
QWEN2VL_2B_TEXT = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, vocab_size=151936, rope_theta=1_000_000.0, mrope_section=[16, 24, 24],
                       max_position_embeddings=32768)
QWEN2VL_2B_VISION = dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14,
                         spatial_merge_size=2, temporal_patch_size=2)
QWEN2VL_IMAGE_PIXELS = dict(min_pixels=56 * 56, max_pixels=28 * 28 * 16384)  # 3,136 .. 12,845,056
# the real tokenizer's ids of SPECIAL_TOKENS (151643 ..): the stand-in keeps them
QWEN2VL_FIRST_SPECIAL_ID = 151643


def real_image_processor() -> Qwen2VLImageProcessorPil:
    """Qwen2-VL-2B-Instruct's image processor settings: a 480x320 image -> 476x308 -> 34x22 patches -> 187
    visual tokens after the 2x2 merge."""
    return Qwen2VLImageProcessorPil(**QWEN2VL_IMAGE_PIXELS)


def visual_tokens(width: int, height: int, min_pixels: int = QWEN2VL_IMAGE_PIXELS["min_pixels"],
                  max_pixels: int = QWEN2VL_IMAGE_PIXELS["max_pixels"], patch: int = 14, merge: int = 2) -> int:
    """Visual tokens of one image after Qwen2-VL's resize (multiples of patch*merge) and the merge."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
    return (h // patch) * (w // patch) // (merge * merge)


class VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor (which needs torchvision, unavailable on CPU wheels)."""

    def __init__(self, image_processor=None, tokenizer=None, video_processor=None, chat_template=None, **kw):
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kw)

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None  # no video processor: this project feeds images only
        return super().check_argument_for_proper_class(argument_name, argument)


def tiny_config(tokenizer, *, text_hidden=128, text_layers=2, text_heads=4, text_kv_heads=2,
                text_intermediate=512, vision_embed=64, vision_depth=2, vision_heads=4,
                initializer_range=0.08) -> Qwen2VLConfig:
    """A tiny Qwen2-VL (same class as the real one); vision ``hidden_size`` equals the text width."""
    head_dim = text_hidden // text_heads
    half = head_dim // 2
    # mrope_section splits head_dim/2 rotary frequencies into (temporal, height, width) parts; Qwen's
    # real split is [16, 24, 24] of 64: keep the same 1/4, 3/8, 3/8 shape.
    t = half // 4
    h = (half - t) // 2
    mrope = [t, h, half - t - h]
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=text_hidden,
            intermediate_size=text_intermediate,
            num_hidden_layers=text_layers,
            num_attention_heads=text_heads,
            num_key_value_heads=text_kv_heads,
            max_position_embeddings=2048,
            initializer_range=initializer_range,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=vision_depth,
            embed_dim=vision_embed,
            hidden_size=text_hidden,
            num_heads=vision_heads,
            mlp_ratio=4,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            initializer_range=initializer_range,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_model(config: Qwen2VLConfig, seed: int) -> Qwen2VLForConditionalGeneration:
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id, pad_token_id=config.text_config.pad_token_id
    )
    return model


def build_standin_tokenizer(texts: list[str], bpe_vocab: int = 1024):
    """A tokenizer laid out like Qwen2-VL-2B-Instruct's: a small BPE trained on ``texts``, unused filler entries up
    to id 151642, then the 14 special tokens at their real ids (151643 ..). Fillers hold a character outside the
    byte-level alphabet, so no text ever encodes to them."""
    small = build_tokenizer(texts, bpe_vocab)
    vocab = {tok: i for tok, i in small.get_vocab().items() if tok not in SPECIAL_TOKENS}
    vocab = {tok: i for i, tok in enumerate(sorted(vocab, key=vocab.get))}
    for i in range(len(vocab), QWEN2VL_FIRST_SPECIAL_ID):
        vocab[f"\u3000unused{i}"] = i
    return qwen2_tokenizer(vocab, _merges(small.backend_tokenizer))


def standin_config(tokenizer, *, text_layers: int = 1, vision_depth: int = 1, seed_range: float = 0.02) -> Qwen2VLConfig:
    """Qwen2-VL-2B-Instruct's config with only ``text_layers`` / ``vision_depth`` layers: every width, the vocabulary,
    rope and the special-token ids are the real ones."""
    t, v = QWEN2VL_2B_TEXT, QWEN2VL_2B_VISION
    config = tiny_config(tokenizer, text_hidden=t["hidden_size"], text_layers=text_layers,
                         text_heads=t["num_attention_heads"], text_kv_heads=t["num_key_value_heads"],
                         text_intermediate=t["intermediate_size"], vision_embed=v["embed_dim"],
                         vision_depth=vision_depth, vision_heads=v["num_heads"], initializer_range=seed_range)
    config.text_config.vocab_size = t["vocab_size"]
    config.text_config.max_position_embeddings = t["max_position_embeddings"]
    config.text_config.rope_parameters["mrope_section"] = list(t["mrope_section"])
    return config


def save_model_dir(model, processor, out_dir: Path) -> None:
    """Save model (safetensors) and processor so that :func:`load_model` reads them back."""
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.tokenizer.save_pretrained(out_dir)
    processor.image_processor.save_pretrained(out_dir)


# ----------------------------------------------------------------------------------------------------------
# loading (both profiles)


def load_processor(path_or_id: str | Path) -> VLProcessor:
    """Tokenizer + PIL image processor from a local directory or a hub id; left padding for generation."""
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), trust_remote_code=False)
    tokenizer.padding_side = "left"  # not saved by save_pretrained: set after every load
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path_or_id))
    return VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def stored_dtype(model_dir: str | Path) -> str:
    """The dtype a model directory's weights are stored in (config ``dtype``, or ``torch_dtype`` as the hub's
    Qwen2-VL-2B-Instruct writes it: bfloat16); float32 when it says nothing."""
    import json

    config = json.loads((Path(model_dir) / "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "float32").removeprefix("torch.")


def load_model(path_or_id: str | Path, dtype: str = "float32", device: str | torch.device = "cpu"):
    """The policy from safetensors only, no remote code; returns (model, processor)."""
    model = AutoModelForImageTextToText.from_pretrained(
        str(path_or_id),
        dtype=getattr(torch, dtype),
        trust_remote_code=False,
        use_safetensors=True,
        attn_implementation="sdpa",
    ).to(device)
    return model, load_processor(path_or_id)


# ----------------------------------------------------------------------------------------------------------
# prompting


def encode_prompts(processor, images: list[Image.Image], prompt_texts: list[str]):
    """Tokenise chat-formatted prompts with their images, left-padded.

    Returns a BatchFeature with input_ids (B, P), attention_mask (B, P), mm_token_type_ids (B, P),
    pixel_values (sum of patches, C*T*14*14) and image_grid_thw (B, 3).
    """
    return processor(
        images=[img.convert("RGB") for img in images],
        text=prompt_texts,
        padding=True,
        return_tensors="pt",
        return_mm_token_type_ids=True,
    )


def chat_prompt(processor, messages: list[dict]) -> str:
    return processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def patches_per_image(image_grid_thw: torch.Tensor) -> list[int]:
    """Rows of ``pixel_values`` that belong to each image: t*h*w of its grid."""
    return image_grid_thw.prod(dim=-1).tolist()


def expand_to_groups(batch: dict, group_size: int) -> dict:
    """Repeat every prompt ``group_size`` times, each with its OWN image patches.

    input_ids (B, P) -> (B*G, P); pixel_values: each image's block of rows repeated G times in place.
    The row order every group function follows; generation and the training forward share each prompt
    instead of repeating it (:func:`prefill`), and the tests compare them with this expansion.
    """
    counts = patches_per_image(batch["image_grid_thw"])
    blocks = torch.split(batch["pixel_values"], counts, dim=0)
    out = {k: v.repeat_interleave(group_size, dim=0) for k, v in batch.items() if k != "pixel_values"}
    out["pixel_values"] = torch.cat([b for b in blocks for _ in range(group_size)], dim=0)
    return out


# ----------------------------------------------------------------------------------------------------------
# generation and log-probs


def end_token_ids(tokenizer) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in END_TOKENS]


def sampling_config(tokenizer, *, max_new_tokens: int, do_sample: bool = True, temperature: float = 1.0,
                    top_p: float = 1.0, min_new_tokens: int = 0) -> GenerationConfig:
    """The blog's sampling (temperature 1, top_p 1, no top-k), every special token but the ends suppressed."""
    ends = set(end_token_ids(tokenizer))
    specials = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    kw = dict(temperature=temperature, top_p=top_p, top_k=0) if do_sample else {}
    return GenerationConfig(
        do_sample=do_sample,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        eos_token_id=sorted(ends),
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=[i for i in specials if i not in ends],
        **kw,
    )


def sampling_probs(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Processed scores (N, V) -> float32 probabilities (N, V) after temperature and top-p (nucleus) filtering."""
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep_sorted = sorted_p.cumsum(-1) - sorted_p < top_p  # always keeps the top token
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


class PerRowSampler:
    """Samples each row from its own ``torch.Generator``: a row's completion then depends on its seed only,
    not on which other rows share the batch, so N processes sampling B/N prompts each reproduce what one
    process sampling all B does.

    Called with the processed scores of one decoding step for the rows still decoding; draws one
    ``torch.rand(1)`` from each of those rows' generators and returns their tokens by inverse CDF over
    :func:`sampling_probs`.
    """

    def __init__(self, seeds: list[int], temperature: float = 1.0, top_p: float = 1.0):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, scores: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        """scores (A, V) of the rows ``rows`` (default: all N) -> tokens (A,); only those rows' generators draw."""
        generators = self.generators if rows is None else [self.generators[r] for r in rows]
        probs = sampling_probs(scores, self.temperature, self.top_p)  # (A, V)
        u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(probs.device)  # (A,)
        cdf = probs.cumsum(-1)
        tokens = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).clamp(max=probs.shape[-1] - 1)
        return tokens.squeeze(-1)


def _token_picker(gen_config: GenerationConfig, row_seeds: list[int] | None):
    """(scores (A, V) of rows ``rows``, rows) -> tokens (A,): greedy, per-row generators, or the global torch RNG."""
    if not gen_config.do_sample:
        return lambda scores, rows=None: scores.argmax(dim=-1)
    if gen_config.top_k not in (None, 0):
        raise ValueError("top-k sampling is not implemented here: use top_k=0 (the blog's sampling)")
    temperature = 1.0 if gen_config.temperature is None else gen_config.temperature
    top_p = 1.0 if gen_config.top_p is None else gen_config.top_p
    if row_seeds is not None:
        return PerRowSampler(row_seeds, temperature, top_p)
    return lambda scores, rows=None: torch.multinomial(sampling_probs(scores, temperature, top_p), 1).squeeze(-1)


def _processed_scores(logits: torch.Tensor, gen_config: GenerationConfig, step: int) -> torch.Tensor:
    """Raw logits (N, V) -> float32 scores with the suppressed tokens at -inf, and the end tokens as well while
    fewer than ``min_new_tokens`` tokens have been drawn (the logits processors ``generate`` would apply)."""
    blocked = list(gen_config.suppress_tokens or [])
    if step < (gen_config.min_new_tokens or 0):
        blocked += _as_list(gen_config.eos_token_id)
    scores = logits.float()
    if not blocked:
        return scores
    return scores.index_fill(-1, torch.tensor(blocked, device=scores.device), float("-inf"))  # out of place


def _as_list(ids) -> list[int]:
    return [ids] if isinstance(ids, int) else list(ids)


@dataclass
class Generation:
    """Completions of a batch of prompts: token ids right-padded after the end token."""

    completion_ids: torch.Tensor  # (N, T) long
    completion_mask: torch.Tensor  # (N, T) bool: tokens up to and including the end token
    logprobs: torch.Tensor | None  # (N, T) float32: log pi(token) under the sampling policy (raw logits)
    texts: list[str]


def completion_mask_from_ids(ids: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    """(N, T) mask that keeps every token up to and including the first end token of each row."""
    is_end = torch.isin(ids, torch.tensor(end_ids, device=ids.device))
    # number of end tokens strictly before each position; a token is kept while none has occurred
    ends_before = torch.cumsum(is_end.int(), dim=1) - is_end.int()
    return ends_before == 0


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """log_softmax(logits)[..., index] without materialising a (N, T, V) fp32 log-prob tensor.

    logits (N, T, V), index (N, T) -> (N, T) float32; processed ``chunk`` rows at a time, which matters at
    the real vocabulary (151k).
    """
    out = []
    for lg, ix in zip(logits.split(chunk), index.split(chunk), strict=True):
        lg = lg.float()
        picked = torch.gather(lg, -1, ix.unsqueeze(-1)).squeeze(-1)
        out.append(picked - torch.logsumexp(lg, dim=-1))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------------
# activation checkpointing with a shared prompt's KV cache


class ReplayableCache(DynamicCache):
    """The prompts' KV cache, safe under activation checkpointing.

    A checkpointed decoder layer runs its forward once more during the backward, to rebuild the activations it
    did not keep. A plain ``DynamicCache`` would then append the layer's keys a second time; here, while a layer
    is replayed (:func:`_checkpoint_contexts`), ``update`` returns the keys the layer saw the first time (the
    cache as it was then, plus the new ones) and writes nothing. Outside a replay it is a ``DynamicCache``.
    """

    def __init__(self):
        super().__init__()
        self._replay: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if self._replay is None:
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        before = self._replay.get(layer_idx)
        if before is None:
            return key_states, value_states
        return torch.cat([before[0], key_states], dim=-2), torch.cat([before[1], value_states], dim=-2)

    def snapshot(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's keys and values now (references: ``update`` and the fan-out make new tensors)."""
        return {i: (layer.keys, layer.values) for i, layer in enumerate(self.layers) if layer.is_initialized}

    @contextlib.contextmanager
    def replaying(self, snapshot: dict[int, tuple[torch.Tensor, torch.Tensor]]):
        self._replay = snapshot
        try:
            yield
        finally:
            self._replay = None


_LIVE_CACHE: ContextVar[ReplayableCache | None] = ContextVar("_LIVE_CACHE", default=None)


@contextlib.contextmanager
def _live(cache: ReplayableCache):
    """Mark ``cache`` as the one the forward running inside reads and writes (for :func:`_checkpoint_contexts`)."""
    token = _LIVE_CACHE.set(cache)
    try:
        yield cache
    finally:
        _LIVE_CACHE.reset(token)


def _checkpoint_contexts():
    """``context_fn`` of ``torch.utils.checkpoint``, called as a checkpointed layer starts its forward: its
    recomputation in the backward will see the live cache as it is now."""
    cache = _LIVE_CACHE.get()
    if cache is None:
        return contextlib.nullcontext(), contextlib.nullcontext()
    return contextlib.nullcontext(), cache.replaying(cache.snapshot())


def enable_gradient_checkpointing(model) -> None:
    """Activation checkpointing of every decoder and vision block in training forwards (non-reentrant).

    Generation runs in eval mode and is not affected. The training forward keeps its shared-prompt KV cache:
    the layers may checkpoint with it, since :class:`ReplayableCache` makes their replays exact.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    model.activation_checkpointing_enable({"use_reentrant": False, "context_fn": _checkpoint_contexts})
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module._can_checkpoint_with_cache = True


# ----------------------------------------------------------------------------------------------------------
# a shared prompt: run each prompt once, fan its KV cache out to the rows that continue it
#
# Positions are always passed explicitly: Qwen2-VL otherwise derives them from ``rope_deltas`` cached on the
# model by an earlier call, which a later call with other prompts would silently reuse.


def _device(model) -> torch.device:
    return next(model.parameters()).device  # works for a DDP-wrapped model too


def _core(model):
    """The ``Qwen2VLModel`` inside the policy, through a DDP wrapper (``.module``) and a peft one (LoRA)."""
    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):  # peft.PeftModel: its .model would be the ForConditionalGeneration
        model = model.get_base_model()
    return model.model


def prompt_positions(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """3-D mrope positions of left-padded prompts, from the model's own rope index.

    Returns (3, B, P) positions (padding at 0, as the model's forward would set them) and (B,) the position of
    each prompt's first completion token: one past the prompt's largest position.
    """
    core = _core(model)
    positions, _ = core.get_rope_index(
        input_ids=batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        image_grid_thw=batch["image_grid_thw"],
        attention_mask=batch["attention_mask"],
    )
    return positions, positions.amax(dim=(0, 2)) + 1


def text_positions(start: torch.Tensor, length: int) -> torch.Tensor:
    """(N,) first positions -> (3, N, length): a text token has the same position on all three mrope axes."""
    pos = start.unsqueeze(1) + torch.arange(length, device=start.device)
    return pos.unsqueeze(0).expand(3, -1, -1)


def row_prompts(n_prompts: int, group_size: int, rows: list[int] | None = None) -> torch.Tensor:
    """(N,) the prompt each completion row continues: row r of the B*G expansion continues prompt r // G.

    ``rows`` picks rows of that expansion (e.g. the injected ones); by default all B*G rows in order.
    """
    rows_t = torch.arange(n_prompts * group_size) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    return rows_t // group_size


class Prefix(NamedTuple):
    """The prompts' state, one row per completion (N rows)."""

    last_logits: torch.Tensor  # (N, V) logits of the last prompt token: they predict completion token 0
    cache: DynamicCache  # the prompts' keys and values, N rows
    attention_mask: torch.Tensor  # (N, P) the prompts' mask (left padding)
    next_position: torch.Tensor  # (N,) position of completion token 0


def prefill(model, batch: dict, prompt_of_row: torch.Tensor) -> Prefix:
    """Run the B prompts once (the vision tower once per image) and fan them out to N completion rows.

    ``prompt_of_row`` (N,) indexes the prompts. The fan-out is an index into the cache and the last logits, so
    it keeps the graph: backward sums the gradients of every row that shares a prompt, as N separate prompt
    forwards would.
    """
    device = _device(model)
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "mm_token_type_ids",
                                               "pixel_values", "image_grid_thw")}
    positions, next_position = prompt_positions(model, inputs)
    # the cache is ours, filled whenever it is passed: use_cache=True would only ask the model for one, and under
    # activation checkpointing log that it will not make one
    with _live(ReplayableCache()) as cache:
        out = model(**inputs, position_ids=positions, past_key_values=cache, use_cache=False, logits_to_keep=1)
    index = prompt_of_row.to(device)
    cache.batch_select_indices(index)  # every layer's keys / values (B, H, P, D) -> (N, H, P, D)
    return Prefix(out.logits[index, -1], cache, inputs["attention_mask"][index], next_position[index])


def _decode(model, prefix: Prefix, gen_config: GenerationConfig, pick, want_logprobs: bool):
    """Decode one token per row per step from the cache until every row has ended (or ``max_new_tokens``).

    Rows that have ended leave the batch (their cache rows are dropped), so no step runs on padding.
    Returns ids (N, T) (pad tokens after a row's end) and, if wanted, log pi(token) (N, T) under the raw
    logits, before suppression and temperature.
    """
    logits, cache, attention, start = prefix
    n, steps = logits.shape[0], gen_config.max_new_tokens
    device = logits.device
    ends = torch.tensor(_as_list(gen_config.eos_token_id), device=device)
    ids = torch.full((n, steps), gen_config.pad_token_id, dtype=torch.long, device=device)
    logps = torch.zeros((n, steps), dtype=torch.float32, device=device)
    active = torch.arange(n, device=device)  # (A,) rows still decoding; logits / cache / attention follow them
    for step in range(steps):
        token = pick(_processed_scores(logits, gen_config, step), active.tolist())  # (A,)
        ids[active, step] = token
        if want_logprobs:
            # one step's logits are (A, 1, V): no need to chunk them
            logps[active, step] = selective_log_softmax(logits.unsqueeze(1), token.unsqueeze(1), chunk=len(token)).squeeze(1)
        going = ~torch.isin(token, ends)
        if not bool(going.any()) or step + 1 == steps:
            break
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)  # every layer's keys / values (A, H, L, D) -> (A', H, L, D)
            active, token, attention, start = active[keep], token[keep], attention[keep], start[keep]
        attention = torch.cat([attention, attention.new_ones(len(active), 1)], dim=1)  # (A, P + step + 1)
        out = model(input_ids=token.unsqueeze(1), attention_mask=attention, past_key_values=cache,
                    position_ids=text_positions(start + step, 1), use_cache=True)
        logits = out.logits[:, -1]
    return ids[:, : step + 1], logps[:, : step + 1] if want_logprobs else None


@torch.no_grad()
def generate(model, processor, batch: dict, gen_config: GenerationConfig, *, want_logprobs: bool = True,
             row_seeds: list[int] | None = None, group_size: int = 1) -> Generation:
    """Sample ``group_size`` completions for each of the B prompts of ``batch`` (left-padded, not expanded).

    Rows come out prompt 0 x G, prompt 1 x G, ... (the order of :func:`expand_to_groups`). Each prompt is run
    once and its KV cache shared by its G rows. With ``row_seeds`` (one per row) and sampling, every row draws
    from its own generator (see :class:`PerRowSampler`); otherwise sampling uses the global torch RNG, and
    ``do_sample=False`` decodes greedily.
    """
    tok = processor.tokenizer
    prefix = prefill(model, batch, row_prompts(len(batch["input_ids"]), group_size))
    ids, logps = _decode(model, prefix, gen_config, _token_picker(gen_config, row_seeds), want_logprobs)
    mask = completion_mask_from_ids(ids, end_token_ids(tok))
    ids = ids.masked_fill(~mask, tok.pad_token_id)
    logprobs = None if logps is None else logps.masked_fill(~mask, 0.0).cpu()
    texts = tok.batch_decode(ids, skip_special_tokens=True)
    return Generation(ids.cpu(), mask.cpu(), logprobs, texts)


def completion_logprobs(model, batch: dict, completion_ids: torch.Tensor, completion_mask: torch.Tensor, *,
                        group_size: int = 1, rows: list[int] | None = None) -> torch.Tensor:
    """Per-token log-probs of the completions under ``model`` (the training forward; keeps the graph).

    batch: B left-padded prompts, not expanded; completion_ids / mask (N, T) are rows of the B*G expansion
    (all of them in order, or the ``rows`` given; see :func:`row_prompts`). Returns (N, T) float32, zero where
    the mask is off.

    Two forwards: the prompts once, fanned out through the KV cache (:func:`prefill`), then the completion
    tokens attending to it. The same maths as one forward of each prompt repeated per row followed by its
    completion (tests compare log-probs and gradients).
    """
    device = _device(model)
    ids, mask = completion_ids.to(device), completion_mask.to(device)
    logits, cache, attention, start = prefill(model, batch, row_prompts(len(batch["input_ids"]), group_size, rows))
    logp = [selective_log_softmax(logits.unsqueeze(1), ids[:, :1])]  # token 0, from the last prompt token
    if ids.shape[1] > 1:
        # token i predicts token i + 1: the last token is not fed
        with _live(cache):
            out = model(input_ids=ids[:, :-1], attention_mask=torch.cat([attention, mask[:, :-1].long()], dim=1),
                        past_key_values=cache, position_ids=text_positions(start, ids.shape[1] - 1), use_cache=False)
        logp.append(selective_log_softmax(out.logits, ids[:, 1:]))
    return torch.cat(logp, dim=1).masked_fill(~mask, 0.0)


def tokenize_completions(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (ids (N, T) right-padded, mask (N, T)), each ending with ``<|im_end|>``."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    seqs = [tokenizer(t, add_special_tokens=False)["input_ids"] + [end] for t in texts]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = True
    return ids, mask
