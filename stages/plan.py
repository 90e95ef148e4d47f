"""``vlm-grpo plan``: will one GRPO step of the full Qwen2-VL-2B fit on a 24, 40 or 80 GB GPU?

The peak GPU memory of one training step, component by component, from the model's shapes (parameters counted
exactly by building the model on the meta device) and from what this trainer's code holds:

- ``stages/train.py`` loads the policy in fp32 (master weights, whatever ``train.precision``) and, for a full
  fine-tune, a frozen reference model (bf16 under bf16-mixed, else fp32) whatever ``kl_coef`` is; the trainer
  runs it when the KL enters the loss or is logged (``kl_log_every``: every step by default). The loss needs it
  only when ``kl_coef > 0``, so the plan counts it then (``--reference always``: as train.py loads it). Under
  LoRA (``train.lora_rank``, peft) the reference is the policy with its adapters off: no second model.
- ``stages/training/loop.py``: AdamW (2 fp32 states per trainable parameter); each of the ``epochs`` passes runs
  the training forward (bf16 autocast under bf16-mixed), then ``zero_grad(set_to_none=True)``, then backward:
  the previous pass's gradients are still allocated when the forward ends, with every activation saved for
  backward and the logits. For the 2B's full fine-tune that moment is the step's peak (:class:`Estimate` also
  weighs the start of backward and the tied embedding's gradient; ``--measure`` checks them on CPU).
  ``train.gradient_checkpointing``: ``vlm.enable_gradient_checkpointing`` (non-reentrant, ``ReplayableCache``).
- ``stages/vlm/qwen2vl.py`` ``completion_logprobs``: two forwards that keep the graph: the B prompts once
  (the vision tower once per image, logits of the last prompt token only), then the N = B*G completions
  (T-1 tokens fed) attending to the prompts' keys and values fanned out to N rows (an index into the KV
  cache). Logits come at the full vocabulary for every completion position. ``selective_log_softmax``
  works 8 rows at a time, but autograd keeps each chunk's fp32 copy for ``logsumexp``'s backward, so the
  chunking bounds the no-grad forwards only, not the training one.

Activations are counted tensor by tensor from what autograd saves in these modules (read off the graph of
the real ``Qwen2VLForConditionalGeneration``); ``vlm-grpo plan --measure`` compares the count with a stand-in
at the 2B widths on CPU (exact saved bytes, allocator peak, RSS peak).

Everything is per process: with several GPUs (``execution.num_processes``) each process takes B / world prompts
(DDP would add gradient buckets, not counted here).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GiB = 2**30
CARDS_GB = (24, 40, 80)  # a "24/40/80 GB" card holds about that many GiB (RTX 4090 24,564 MiB, A100 40/80 GiB)
HEADROOM = 0.10  # kept free for the CUDA context (~0.5 GiB), cuBLAS workspaces and allocator fragmentation
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PRECISIONS = ("fp32", "bf16-mixed")
# Qwen2-VL-2B-Instruct's special token ids (the real tokenizer's: <|endoftext|> 151643 ...)
_SPECIAL = dict(bos_token_id=151643, eos_token_id=151645, pad_token_id=151643)
_VISION_IDS = dict(vision_start_token_id=151652, vision_end_token_id=151653, image_token_id=151655,
                   video_token_id=151656)


# ----------------------------------------------------------------------------------------------------------
# the model: its config, its shape, its parameters


def qwen2vl_2b_config(*, text_layers: int | None = None, vision_depth: int | None = None,
                      vocab_size: int | None = None):
    """A ``Qwen2VLConfig`` of Qwen2-VL-2B-Instruct's published shape (``QWEN2VL_2B_TEXT`` / ``_VISION``).

    The overrides build the CPU stand-in of ``--measure`` (same widths, fewer layers, maybe a smaller vocabulary;
    the special ids then move to the vocabulary's last 14 ids).
    """
    from transformers import Qwen2VLConfig

    from stages.vlm.qwen2vl import QWEN2VL_2B_TEXT, QWEN2VL_2B_VISION

    text = {k: v for k, v in QWEN2VL_2B_TEXT.items() if k not in ("rope_theta", "mrope_section")}
    rope = {"rope_type": "default", "rope_theta": QWEN2VL_2B_TEXT["rope_theta"],
            "mrope_section": list(QWEN2VL_2B_TEXT["mrope_section"])}
    special, vision_ids = dict(_SPECIAL), dict(_VISION_IDS)
    if text_layers is not None:
        text["num_hidden_layers"] = text_layers
    if vocab_size is not None and vocab_size != text["vocab_size"]:
        shift = vocab_size - 14 - 151643  # keep the 14 special tokens at the end of the vocabulary
        special = {k: v + shift for k, v in special.items()}
        vision_ids = {k: v + shift for k, v in vision_ids.items()}
        text["vocab_size"] = vocab_size
    vision = dict(QWEN2VL_2B_VISION)
    if vision_depth is not None:
        vision["depth"] = vision_depth
    return Qwen2VLConfig(text_config=dict(**text, **special, rope_parameters=rope, tie_word_embeddings=True),
                         vision_config=vision, tie_word_embeddings=True, **vision_ids)


def config_from_dir(model_dir: Path):
    """The ``Qwen2VLConfig`` of a model directory (its config.json), e.g. models/base."""
    from transformers import Qwen2VLConfig

    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json")
    return Qwen2VLConfig.from_pretrained(str(model_dir))


@dataclass(frozen=True)
class Shape:
    """The widths the activation count needs (Qwen2-VL-2B: H 1536, I 8960, 28 layers, 12/2 heads of 128)."""

    hidden: int  # H: text width, the residual stream
    intermediate: int  # I: text MLP width
    layers: int  # L: text decoder layers
    heads: int  # query heads
    kv_heads: int  # key/value heads (GQA)
    head_dim: int
    vocab: int  # V: logits width
    vision_embed: int  # E: vision tower width (1280)
    vision_depth: int  # vision blocks (32)
    vision_heads: int  # 16: head dim E/16 = 80
    vision_mlp: int  # M: vision MLP width, E * mlp_ratio (5120)
    patch: int  # 14
    merge: int  # 2: 2x2 patches -> one visual token
    temporal_patch: int  # 2: an image is repeated twice in time
    in_channels: int  # 3


def shape_of(config) -> Shape:
    t, v = config.text_config, config.vision_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    return Shape(hidden=t.hidden_size, intermediate=t.intermediate_size, layers=t.num_hidden_layers,
                 heads=t.num_attention_heads, kv_heads=t.num_key_value_heads, head_dim=head_dim,
                 vocab=t.vocab_size, vision_embed=v.embed_dim, vision_depth=v.depth, vision_heads=v.num_heads,
                 vision_mlp=int(v.embed_dim * v.mlp_ratio), patch=v.patch_size, merge=v.spatial_merge_size,
                 temporal_patch=v.temporal_patch_size, in_channels=getattr(v, "in_channels", 3))


@dataclass(frozen=True)
class ParamCount:
    """Parameters of ``Qwen2VLForConditionalGeneration``, each counted once (a tied lm_head is the embedding)."""

    vision: int  # vision tower, merger included
    language: int  # decoder layers and the final norm
    embedding: int  # token embedding (= lm_head when tied; an untied lm_head is added here)
    matmul: int  # weights of matrix products (linear, conv, lm_head): what autocast casts to bf16
    text_matmul_per_layer: int  # q, k, v, o, gate, up, down weights of one decoder layer
    qkv_per_layer: int  # q, k, v weights of one decoder layer
    tied: bool

    @property
    def total(self) -> int:
        return self.vision + self.language + self.embedding


def count_params(config) -> ParamCount:
    """Count exactly by building the model on the meta device (no memory, ~0.1 s)."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    core = model.model
    vision = sum(p.numel() for p in core.visual.parameters())
    embed = core.language_model.embed_tokens.weight
    tied = model.lm_head.weight is embed
    embedding = embed.numel() + (0 if tied else model.lm_head.weight.numel())
    language = sum(p.numel() for p in core.language_model.parameters()) - embed.numel()
    matmul = sum(p.numel() for p in model.parameters() if p.dim() >= 2)  # parameters() yields a tied weight once
    layer = core.language_model.layers[0]
    per_layer = sum(getattr(m, n).weight.numel() for m in (layer.self_attn, layer.mlp) for n in LORA_TARGETS
                    if hasattr(m, n))
    qkv = sum(getattr(layer.self_attn, n).weight.numel() for n in ("q_proj", "k_proj", "v_proj"))
    return ParamCount(vision=vision, language=language, embedding=embedding, matmul=matmul,
                      text_matmul_per_layer=per_layer, qkv_per_layer=qkv, tied=tied)


def lora_params(shape: Shape, rank: int) -> int:
    """Trainable parameters of LoRA on the 7 linear layers of every text decoder layer: rank * (d_in + d_out) each.

    Per layer: q (H -> H), k and v (H -> kv), o (H -> H), gate and up (H -> I), down (I -> H), where
    kv = kv_heads * head_dim; the vision tower, the embedding and the norms stay frozen.
    """
    H, inter, kv = shape.hidden, shape.intermediate, shape.kv_heads * shape.head_dim
    dims = [(H, shape.heads * shape.head_dim), (H, kv), (H, kv), (shape.heads * shape.head_dim, H),
            (H, inter), (H, inter), (inter, H)]
    return shape.layers * rank * sum(d_in + d_out for d_in, d_out in dims)


# ----------------------------------------------------------------------------------------------------------
# the step's workload


def image_grid(width: int, height: int, patch: int = 14, merge: int = 2, min_pixels: int | None = None,
               max_pixels: int | None = None) -> tuple[int, int]:
    """(rows, columns) of 14-px patches of one image after Qwen2-VL's resize: 480x320 -> 308x476 -> (22, 34)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from stages.vlm.qwen2vl import QWEN2VL_IMAGE_PIXELS

    h, w = smart_resize(height, width, factor=patch * merge,
                        min_pixels=min_pixels or QWEN2VL_IMAGE_PIXELS["min_pixels"],
                        max_pixels=max_pixels or QWEN2VL_IMAGE_PIXELS["max_pixels"])
    return h // patch, w // patch


@dataclass(frozen=True)
class Workload:
    """One step's shapes (this process's share): B prompts, each with one image, G completion rows each."""

    prompts: int  # B
    group: int  # G
    max_new_tokens: int  # T: the completion width when a row runs to the limit (the worst case)
    patches: int  # 14-px patches of one image (748 at 480x320), the vision tower's tokens
    visual_tokens: int  # after the 2x2 merge (187), in the prompt
    text_tokens: int  # the rest of the prompt: chat template, question, <|vision_start|>/<|vision_end|>
    prompts_per_forward: int = 0  # prompts per training forward (0: all B, as the code runs)

    @property
    def rows(self) -> int:  # N = B*G completion rows
        return self.prompts * self.group

    @property
    def prompt_len(self) -> int:  # P
        return self.visual_tokens + self.text_tokens

    @property
    def per_forward(self) -> int:  # prompts in one training forward
        return self.prompts_per_forward or self.prompts


def workload_for(train, shape: Shape, width: int = 480, height: int = 320, text_tokens: int = 60,
                 min_pixels: int | None = None, max_pixels: int | None = None) -> Workload:
    gh, gw = image_grid(width, height, shape.patch, shape.merge, min_pixels, max_pixels)
    return Workload(prompts=train.prompts_per_step, group=train.group_size, max_new_tokens=train.max_new_tokens,
                    patches=gh * gw, visual_tokens=gh * gw // shape.merge**2, text_tokens=text_tokens)


@dataclass(frozen=True)
class Option:
    """One way to run the step: a row of the options table."""

    precision: str = "bf16-mixed"  # fp32 | bf16-mixed
    checkpointing: bool = False  # gradient checkpointing of every decoder layer and vision block
    lora_rank: int = 0  # 0: full fine-tune; r: LoRA of rank r on the text model's linear layers
    prompts_per_forward: int = 0  # 0: all B prompts (B*G rows) in one training forward, as the code does

    def cells(self, workload: Workload) -> tuple[str, str, str, int]:
        """(precision, checkpointing, tuning, rows per training forward)."""
        tune = f"LoRA r={self.lora_rank}" if self.lora_rank else "full"
        p = self.prompts_per_forward or workload.prompts
        return self.precision, "on" if self.checkpointing else "off", tune, p * workload.group

    def label(self, workload: Workload) -> str:
        precision, ckpt, tune, rows = self.cells(workload)
        return f"{precision}, checkpointing {ckpt}, {tune}, {rows} rows per training forward"


# ----------------------------------------------------------------------------------------------------------
# activations saved for backward: one function per module, bytes for one forward
#
# Dtypes under bf16-mixed (autocast, fp32 weights): the residual stream stays fp32 (the embedding and the
# RMSNorms run in fp32, and bf16 + fp32 is fp32); every linear casts its own input to bf16 (the same fp32 tensor
# is cast once per linear that reads it); rope multiplies bf16 q/k by fp32 cos/sin, so q/k come out fp32 and
# SDPA (an autocast op) saves bf16 casts of them. Under fp32 everything is 4 bytes and the linears that read
# one tensor share it.


def _bytes(precision: str) -> int:
    return 2 if precision == "bf16-mixed" else 4


def text_layer_saved(shape: Shape, rows: int, q_len: int, k_len: int, precision: str, *, lora_rank: int = 0,
                     masked: bool = True) -> int:
    """Bytes one decoder layer saves for backward: ``rows`` x ``q_len`` queries over ``k_len`` keys each.

    Per query token (H = 1536, I = 8960):
      RMSNorm (x2)   input x, fp32 (for x * rsqrt); normalised h, fp32 (for the norm weight's gradient; not
                     with LoRA, whose norms are frozen)
      fp32           the norm's output, shared by the linears that read it: +1 H per norm (LoRA: lora_A needs it)
      bf16           q, k, v and gate, up cast their input each: 5 bf16 H (LoRA: the lora_A's casts; the frozen
                     base linears keep only their weight; peft also casts o_proj's bf16 input to fp32 for lora_A,
                     whose autocast cast back is one more bf16 H; down_proj's copy replaces the product)
      attention      q after rope and the SDPA output (= o_proj's input): 2 H in the compute dtype
      MLP            gate out (SiLU's input), SiLU out, up out, their product (down's input): 4 I
      LoRA           lora_A's output (rank) in each of the 7 adapted linears
    Per key: keys and values at all query heads in the compute dtype (a left-padded batch has an attention mask,
    and with a mask transformers expands the 2 kv heads to 12 by ``repeat_kv`` instead of SDPA's GQA);
    without a mask, at the kv heads. Per query and head: SDPA's logsumexp (fp32). Per query and key: the
    attention mask SDPA keeps, in the compute dtype (each layer converts its own).
    """
    H = shape.hidden
    c = _bytes(precision)
    tokens, keys = rows * q_len, rows * k_len
    norms = 2 * 4 * H * (1 if lora_rank else 2)  # x (and h) of both norms, fp32
    if precision == "fp32":
        linear_inputs = 2 * 4 * H  # one shared norm output per norm
    else:
        linear_inputs = (6 if lora_rank else 5) * 2 * H  # q, k, v, gate, up: one bf16 cast each (+ peft's o copy)
    attention = 2 * c * shape.heads * shape.head_dim  # q (rope'd) and the output
    mlp = 4 * c * shape.intermediate
    lora = 7 * c * lora_rank
    kv_width = (shape.heads if masked else shape.kv_heads) * shape.head_dim
    per_key = 2 * c * kv_width
    lse = 4 * shape.heads
    mask = rows * q_len * k_len * c if masked else 0
    return tokens * (norms + linear_inputs + attention + mlp + lora + lse) + keys * per_key + mask


def forward_shared_saved(shape: Shape, rows: int, q_len: int) -> int:
    """Saved once per forward and shared by all layers: rope cos and sin (rows, 1, q_len, head_dim), fp32."""
    return 2 * rows * q_len * shape.head_dim * 4


def head_saved(shape: Shape, rows: int, q_len: int, kept: int, precision: str, *, lora_rank: int = 0) -> int:
    """The final RMSNorm and lm_head's input for one forward of ``rows`` x ``q_len`` tokens, ``kept`` logits per row.

    Full fine-tune: the norm's x and h (fp32); lm_head's input: fp32, the norm's output over the whole sequence
    even when only the last position's logits are kept (``logits_to_keep`` slices a view, and the view keeps
    its storage); bf16, a cast of the kept positions only. LoRA (frozen norm and lm_head): the norm's x only.
    """
    H, tokens = shape.hidden, rows * q_len
    if lora_rank:
        return tokens * 4 * H
    if precision == "fp32":
        return tokens * 3 * 4 * H
    return tokens * 2 * 4 * H + rows * kept * 2 * H


def vision_block_saved(shape: Shape, patches: int, images: int, precision: str, autocast_device: str = "cuda") -> int:
    """Bytes one vision block saves for ``patches`` patches (all the forward's images; E = 1280, M = 5120).

    Per patch: the two LayerNorms' inputs (under CUDA autocast layer_norm runs in fp32, so it saves an fp32
    copy; CPU autocast keeps bf16); qkv's input; qkv's output (3 E: v is a view of it, so all of it stays);
    q and k after rope; the SDPA output; proj's input; fc1's input: 9 E in the compute dtype; quick_gelu's
    input and sigmoid and fc2's input: 3 M. Per image, head and patch: SDPA's logsumexp (fp32).
    """
    c = _bytes(precision)
    ln = 4 if (precision == "bf16-mixed" and autocast_device == "cuda") else c
    E, M = shape.vision_embed, shape.vision_mlp
    return patches * (2 * ln * E + 9 * c * E + 3 * c * M + 4 * shape.vision_heads)


def vision_rest_saved(shape: Shape, patches: int, precision: str, autocast_device: str = "cuda",
                      conv_input: bool = True) -> int:
    """The vision tower outside its blocks: the patch embedding's input (C*T*14*14 per patch, cast for the conv),
    rope cos and sin (fp32, E/heads each), the merger: LayerNorm input E, the 2x2-merged MLP's input, GELU's
    input and the last linear's input (4E wide per 4 patches: E per patch each)."""
    c = _bytes(precision)
    ln = 4 if (precision == "bf16-mixed" and autocast_device == "cuda") else c
    E = shape.vision_embed
    pixels = shape.in_channels * shape.temporal_patch * shape.patch**2 if conv_input else 0
    rope = 2 * 4 * (E // shape.vision_heads)
    return patches * (pixels * c + rope + ln * E + 3 * c * E)


def activations(shape: Shape, w: Workload, option: Option, autocast_device: str = "cuda") -> dict[str, int]:
    """Activations saved for backward by one training forward (``completion_logprobs``), by part.

    Two forwards: the prompts (p rows x P tokens, the vision tower on their p images) and the completions
    (p*G rows x T-1 tokens over P + T-1 keys), p prompts per forward (all B in the code). With gradient
    checkpointing (``vlm.enable_gradient_checkpointing``: non-reentrant, a ``ReplayableCache``) every decoder layer
    and vision block keeps only its input (text: fp32 residual H per token; vision: E per patch); the replays'
    snapshots keep every layer's prompt keys and values (B rows, and fanned out to N rows) and the checkpoints
    keep the cache itself (N rows x P + T-1): all fp32 (see :func:`kv_cache_bytes`); one layer at a time is
    recomputed in backward (its full activations: :data:`RECOMPUTE`, not alive at the forward's end).
    LoRA (text only) leaves the vision tower frozen: it runs without a graph and saves nothing, except under
    checkpointing: transformers then makes every input embedding's output require grad (``enable_input_require_grads``,
    for the patch embedding too), so the frozen tower builds a graph: its blocks keep their inputs and the merger
    its activations (and its backward runs, for no gradient).
    """
    p, prec, r = w.per_forward, option.precision, option.lora_rank
    P, T1 = w.prompt_len, w.max_new_tokens - 1
    n_rows = p * w.group
    patches = p * w.patches
    prefill_layer = text_layer_saved(shape, p, P, P, prec, lora_rank=r)
    completion_layer = text_layer_saved(shape, n_rows, T1, P + T1, prec, lora_rank=r)
    block = 0 if r else vision_block_saved(shape, patches, p, prec, autocast_device)
    c = _bytes(prec)
    if r:  # layer 0's first RMSNorm reads the frozen embedding: no gradient flows there, nothing is saved
        prefill_first, completion_first = p * P * 4 * shape.hidden, n_rows * T1 * 4 * shape.hidden
    else:
        prefill_first = completion_first = 0
    if option.checkpointing:
        layers_prefill = shape.layers * p * P * 4 * shape.hidden  # layer inputs (fp32 residual)
        layers_completion = shape.layers * n_rows * T1 * 4 * shape.hidden
        vision_blocks = shape.vision_depth * patches * c * shape.vision_embed
        kv_kept = shape.layers * shape.kv_heads * shape.head_dim * 8 * (p * P + n_rows * P + n_rows * (P + T1))
        block = block or vision_block_saved(shape, patches, p, prec, autocast_device)
        recompute = max(prefill_layer, completion_layer, block)
    else:
        layers_prefill = shape.layers * prefill_layer - prefill_first
        layers_completion = shape.layers * completion_layer - completion_first
        vision_blocks = shape.vision_depth * block
        kv_kept = recompute = 0
    if not r:
        vision_rest = vision_rest_saved(shape, patches, prec, autocast_device)
    elif option.checkpointing:  # the graph starts at the patch embedding's output: no conv input
        vision_rest = vision_rest_saved(shape, patches, prec, autocast_device, conv_input=False)
    else:
        vision_rest = 0
    return {
        "vision tower": vision_blocks + vision_rest,
        "text, prompts": layers_prefill + head_saved(shape, p, P, 1, prec, lora_rank=r)
        + forward_shared_saved(shape, p, P),
        "text, completions": layers_completion + head_saved(shape, n_rows, T1, T1, prec, lora_rank=r)
        + forward_shared_saved(shape, n_rows, T1),
        "keys/values kept for the replays": kv_kept,
        RECOMPUTE: recompute,
    }


RECOMPUTE = "one layer recomputed (in backward)"


def logits_bytes(shape: Shape, w: Workload, precision: str) -> dict[str, int]:
    """Logits at the full vocabulary (V = 151,936) for one training forward's N = p*G rows.

    saved: the fp32 input of ``logsumexp`` in ``selective_log_softmax`` for T-1 completion positions plus the
    first token's (from the last prompt position): N x T x V x 4, whatever the chunking (each chunk's copy is
    saved). Under fp32 that is the logits tensor itself.
    transient: under bf16-mixed the bf16 logits themselves (N x T x V x 2), alive until ``completion_logprobs``
    returns, so at the forward's end; and ``logsumexp``'s exp(x - max) buffer for one chunk (8 x T x V x 4).
    gradient: at the start of backward, the chunks' gradients and their concatenation (2 x N x T x V in the
    compute dtype) and one chunk's fp32 gradient, while every saved tensor is still alive.
    """
    n = w.per_forward * w.group
    cells = n * w.max_new_tokens * shape.vocab
    chunk = 4 * min(n, 8) * w.max_new_tokens * shape.vocab
    c = _bytes(precision)
    return {"saved": 4 * cells, "transient": (2 * cells if c == 2 else 0) + chunk,
            "gradient": 2 * c * cells + (chunk if c == 2 else 0)}


def kv_cache_bytes(shape: Shape, rows: int, length: int) -> int:
    """Keys and values of ``rows`` x ``length`` tokens over all layers at the kv heads, fp32 in both precisions.

    Under bf16-mixed rope multiplies the bf16 key by fp32 cos/sin, so keys are fp32; the cache's first (empty)
    tensor takes the key's dtype, and concatenating bf16 values to it promotes them to fp32 as well.
    """
    return shape.layers * rows * length * shape.kv_heads * shape.head_dim * 8


# ----------------------------------------------------------------------------------------------------------
# the whole step


@dataclass
class Estimate:
    option: Option
    components: dict[str, int]  # resident through the step: weights, gradients, optimizer, reference
    training: dict[str, int]  # on top of them at the end of the training forward (the peak)
    activations: dict[str, int]  # the parts of training["activations saved for backward"]
    logits_gradient: int  # on top of the saved tensors at the start of backward (the old gradients freed)
    embedding_moment: int  # on top of resident - gradients when backward reaches the completions' embedding
    generation: dict[str, int]  # on top of them during generation
    trainable: int
    notes: list[str] = field(default_factory=list)

    @property
    def resident(self) -> int:
        return sum(self.components.values())

    @property
    def forward_end(self) -> int:
        return self.resident + sum(self.training.values())

    @property
    def backward_start(self) -> int:
        """zero_grad(set_to_none) has freed the gradients; the saved tensors are all alive; the logits' gradient."""
        saved = sum(v for k, v in self.training.items() if k in SAVED_PARTS)
        return self.resident - self.components[GRADIENTS] + saved + self.logits_gradient + self.activations[RECOMPUTE]

    @property
    def backward_embedding(self) -> int:
        """Backward at the completions' embedding: see :func:`embedding_moment`."""
        return self.resident - self.components[GRADIENTS] + self.embedding_moment

    @property
    def training_peak(self) -> int:
        return max(self.forward_end, self.backward_start, self.backward_embedding)

    @property
    def generation_peak(self) -> int:
        return self.resident + sum(self.generation.values())

    @property
    def peak(self) -> int:
        return max(self.training_peak, self.generation_peak)

    def fits(self, card_gb: int, headroom: float = HEADROOM) -> bool:
        return fits(self.peak, card_gb, headroom)


GRADIENTS = "gradients (fp32, trainable)"
SAVED_PARTS = ("bf16 weight copies (autocast)", "activations saved for backward", "logits, fp32 log-softmax inputs (saved)")


def fits(peak_bytes: int, card_gb: int, headroom: float = HEADROOM) -> bool:
    """A peak fits a card of ``card_gb`` GiB when it leaves ``headroom`` of it free."""
    return peak_bytes <= card_gb * GiB * (1 - headroom)


def weight_copies(params: ParamCount, shape: Shape, option: Option) -> int:
    """bf16 copies of the weights under bf16-mixed, alive at the end of the training forward.

    Full fine-tune: autocast casts every matmul weight once per autocast region and caches the cast (a leaf
    that requires grad); the backward keeps it: 2 bytes x matmul weights. LoRA: the frozen base weights are not
    cached, so each forward that needs them for backward (prompts, completions) keeps its own cast: the text
    linears (not layer 0's q, k, v, whose input has no gradient) and lm_head, twice. LoRA with checkpointing:
    the layers' casts go with their recompute, lm_head's two stay, and so do the vision merger's (its graph,
    see :func:`activations`).
    """
    if option.precision != "bf16-mixed":
        return 0
    if not option.lora_rank:
        return 2 * params.matmul
    lm_head = shape.vocab * shape.hidden
    if option.checkpointing:
        merged = shape.vision_embed * shape.merge**2
        return 2 * 2 * lm_head + 2 * (merged * merged + merged * shape.hidden)
    per_forward = shape.layers * params.text_matmul_per_layer - params.qkv_per_layer + lm_head
    return 2 * 2 * per_forward


def embedding_moment(params: ParamCount, shape: Shape, w: Workload, option: Option, acts: dict[str, int],
                     copies: int) -> int:
    """Bytes above (resident - gradients) when backward reaches the completions' token embedding (full fine-tune).

    Autograd runs the completion forward's graph first (its nodes are newer), ending at its embedding, then the
    prompts' graph. At that moment the prompts' and the vision tower's saved tensors (and the bf16 weight copies
    they need) are alive, the text layers' gradients are allocated, and the tied embedding / lm_head weight has
    several V x H tensors. fp32: its gradient so far (from lm_head), the embedding's dense gradient and their
    sum (an out-of-place add): 3 x 4 bytes. bf16-mixed: lm_head's weight gradient stays bf16 (2 bytes) until
    both forwards' contributions are summed and cast to fp32 once, next to the embedding's fp32 gradient: at most
    10 bytes per weight (an upper bound: on the CPU stand-in this moment stays below the forward's peak).
    LoRA: the embedding is frozen, nothing of the kind. (The 2B's full fine-tune peaks at the forward's end.)
    """
    if option.lora_rank:
        return 0
    per_weight = 12 if option.precision == "fp32" else 10
    n = w.per_forward * w.group
    return (copies + acts["vision tower"] + acts["text, prompts"] + 4 * params.language
            + per_weight * shape.vocab * shape.hidden + 4 * n * shape.vocab)


def estimate(params: ParamCount, shape: Shape, w: Workload, option: Option, *, reference: bool,
             autocast_device: str = "cuda") -> Estimate:
    """Peak memory of one GRPO step under ``option``: max(generation, end of the training forward)."""
    w = dataclasses.replace(w, prompts_per_forward=option.prompts_per_forward)
    c = _bytes(option.precision)
    lora = lora_params(shape, option.lora_rank) if option.lora_rank else 0
    trainable = lora or params.total
    components = {
        "master weights (fp32)": 4 * (params.total + lora),
        GRADIENTS: 4 * trainable,
        "AdamW state (2 x fp32, trainable)": 8 * trainable,
        # under LoRA the reference is the policy with its adapters off (train.py loads no second model)
        f"reference model ({'bf16' if c == 2 else 'fp32'})": c * params.total if reference and not lora else 0,
    }
    acts = activations(shape, w, option, autocast_device)
    logits = logits_bytes(shape, w, option.precision)
    n = w.per_forward * w.group
    training = {
        "bf16 weight copies (autocast)": weight_copies(params, shape, option),
        "activations saved for backward": sum(v for k, v in acts.items() if k != RECOMPUTE),
        "logits, fp32 log-softmax inputs (saved)": logits["saved"],
        "logits, bf16 + one chunk's log-softmax buffer": logits["transient"],
        # held by completion_logprobs until it returns (with checkpointing: among the activations, kept longer)
        "training forward's KV cache (until it returns)": 0 if option.checkpointing else
        kv_cache_bytes(shape, n, w.prompt_len + w.max_new_tokens - 1),
    }
    N = w.rows
    generation = {
        # the autocast cache holds a bf16 copy of every trainable matmul weight through generate()
        "bf16 weight copies (autocast)": 2 * (params.matmul if not option.lora_rank else 0) if c == 2 else 0,
        "generation KV cache": kv_cache_bytes(shape, N, w.prompt_len + w.max_new_tokens),
        # one decoding step: fp32 scores, probabilities and their cumsum over the vocabulary, per row
        "sampling buffers": 3 * 4 * N * shape.vocab,
    }
    # with checkpointing no graph keeps the bf16 copies: they go with autocast's cache when the forward returns
    copies = 0 if option.checkpointing else training["bf16 weight copies (autocast)"]
    moment = embedding_moment(params, shape, w, option, acts, copies)
    return Estimate(option, components, training, acts, logits["gradient"], moment, generation, trainable)


def options(current=None, group: int = 8, prompts: int = 4) -> list[Option]:
    """The table's rows: {fp32, bf16-mixed} x checkpointing {off, on} x {full, LoRA 16 (and the current rank)} x
    prompts per training forward {all B, 1 (one group of G rows; micro-batching, which the code does not do)}."""
    ranks = sorted({0, 16, int(getattr(current, "lora_rank", 0) or 0)})
    per_forward = [0] if prompts <= 1 else [0, 1]
    return [Option(p, ck, r, f) for p in PRECISIONS for ck in (False, True) for r in ranks for f in per_forward]


def current_option(train) -> Option:
    """The row matching params.yaml's train section (checkpointing / LoRA only if those params exist)."""
    return Option(precision=train.precision, checkpointing=bool(getattr(train, "gradient_checkpointing", False)),
                  lora_rank=int(getattr(train, "lora_rank", 0) or 0))


def load_profile_config(params: Path, profile: str):
    """params.yaml resolved for ``profile`` (its ``profile:`` key overridden), validated like every command's."""
    import yaml

    from stages.config import ConfigError, config_from_dict

    path = Path(params)
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run from the repository root or pass --params PATH")
    raw = yaml.safe_load(path.read_text())
    if isinstance(raw, dict):
        raw = {**raw, "profile": profile}
    return config_from_dict(raw)


def image_pixel_limits(model_dir: Path | None) -> tuple[int | None, int | None]:
    """min/max pixels of a model dir's preprocessor_config.json (None: Qwen2-VL-2B-Instruct's)."""
    if model_dir is None:
        return None, None
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        return None, None
    pre = json.loads(path.read_text())
    size = pre.get("size") or {}
    return (pre.get("min_pixels") or size.get("shortest_edge"), pre.get("max_pixels") or size.get("longest_edge"))


# ----------------------------------------------------------------------------------------------------------
# disk: what a run of the whole grid keeps on disk at its peak

# the blog's CLEVR training set as parquet when no local copy is there to measure: the hub's parquet conversion of
# leonardPKU/clevr_cogen_a_train lists files of ~490 MB, at least 17 of them (an estimate, not a measurement)
CLEVR_PARQUET_ESTIMATE = 17 * 490 * 10**6


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).is_dir() else 0


def checkpoint_bytes(params: ParamCount, trainable: int) -> int:
    """One checkpoint: the fp32 weights saved (all of them, or LoRA's adapters) and AdamW's two fp32 moments."""
    saved = trainable if trainable < params.total else params.total  # LoRA: the adapters only
    return 4 * saved + 8 * trainable


def disk_needs(params: ParamCount, trainable: int, cells: int, raw_data: int, workers: int = 1) -> dict[str, int]:
    """Bytes on disk at the grid's peak, part by part: the model stored in bf16 (the hub's dtype; trained cells
    are stored in the base's dtype), DVC's cache holding a copy of every output (its default cache.type copies),
    and one checkpoint per cell in training (``workers`` cells at a time; each is deleted once its cell is done)."""
    model = 2 * params.total
    datasets = raw_data  # data/datasets: the same images, re-saved by fetch_data
    out = {
        "raw data (data/raw: CLEVR parquet, SuperCLEVR)": raw_data,
        "datasets (data/datasets)": datasets,
        "base model (data/raw copy + models/base)": 2 * model,
        f"trained cells (models/CELL, {cells} x bf16)": cells * model,
        "DVC cache (a copy of datasets, base and cells)": datasets + model + cells * model,
        f"checkpoints at their peak ({workers} cell(s) training at once)": workers * checkpoint_bytes(params, trainable),
    }
    out["total"] = sum(out.values())
    return out


def disk_report(cfg, params: ParamCount, trainable: int, raw_dir: Path | None, workers: int = 1) -> tuple[list[str], dict]:
    cells = len(cfg.prompt_styles) * 2 * len(cfg.seeds)
    measured = dir_bytes(raw_dir) if raw_dir is not None else 0
    raw = measured or CLEVR_PARQUET_ESTIMATE
    need = disk_needs(params, trainable, cells, raw, workers)
    ckpt = checkpoint_bytes(params, trainable)
    every = cfg.execution.checkpoint_every
    lines = ["", f"disk for the grid ({cells} cells; execution.checkpoint_every = {every})",
             f"{'part':<60s}{'GiB':>8s}"]
    lines += [f"{name:<60s}{gib(n):>8s}" for name, n in need.items()]
    lines += [f"  raw data: {'measured in ' + str(raw_dir) if measured else 'an estimate (no local copy to measure)'}; "
              f"one checkpoint {gib(ckpt)} GiB, written {cfg.train.steps // every} times a cell "
              f"({gib(ckpt * (cfg.train.steps // every))} GiB written), only the newest kept",
              "  `dvc config cache.type hardlink,symlink` links outputs into the cache instead of copying them: "
              f"{gib(need['DVC cache (a copy of datasets, base and cells)'])} GiB less"]
    return lines, {"disk_bytes": need, "checkpoint_bytes": ckpt, "raw_data_measured": bool(measured)}


# ----------------------------------------------------------------------------------------------------------
# printing


def gib(n: int) -> str:
    return f"{n / GiB:.2f}"


def _line(name: str, n: int, note: str = "", indent: int = 0) -> str:
    return f"{' ' * indent}{name:<{50 - indent}s}{n:>17,d}{gib(n):>8s}  {note}".rstrip()


TABLE_HEAD = (f"  {'precision':<11s}{'ckpt':<5s}{'tuning':<11s}{'rows/fwd':>8s}{'trainable':>15s}{'peak GiB':>10s}"
              + "".join(f"{f'{g} GB':>7s}" for g in CARDS_GB))


def table_row(mark: str, option: Option, w: Workload, est: Estimate) -> str:
    precision, ckpt, tune, rows = option.cells(w)
    return (f"{mark} {precision:<11s}{ckpt:<5s}{tune:<11s}{rows:>8d}{est.trainable:>15,d}{gib(est.peak):>10s}"
            + "".join(f"{'yes' if est.fits(g) else 'no':>7s}" for g in CARDS_GB))


def plan_report(*, label: str, cfg, params: ParamCount, shape: Shape, w: Workload, current: Option,
                reference_mode: str = "auto") -> tuple[str, dict]:
    """The printed plan and its numbers (for --json)."""
    t = cfg.train
    needed = t.kl_coef > 0
    counted = {"auto": needed, "always": True, "never": False}[reference_mode]
    ref_bytes = _bytes(current.precision) * params.total
    est = estimate(params, shape, w, current, reference=counted)
    ck = estimate(params, shape, w, dataclasses.replace(current, checkpointing=not current.checkpointing),
                  reference=counted)
    out = [
        f"vlm-grpo plan: {label}, profile {cfg.profile}",
        f"parameters {params.total:,d} = vision tower {params.vision:,d} + language model {params.language:,d} "
        f"+ embedding {params.embedding:,d}" + (" (lm_head tied: counted once)" if params.tied else " (+ lm_head)"),
        f"step: B = {w.prompts} prompts x G = {w.group} = {w.rows} rows; prompt P = {w.prompt_len} tokens "
        f"({w.visual_tokens} visual from {w.patches} patches + {w.text_tokens} text); T = {w.max_new_tokens} new "
        f"tokens; {t.epochs} passes; kl_coef {t.kl_coef:g}",
        f"option: {current.label(w)}",
        "",
        f"{'component':<50s}{'bytes':>17s}{'GiB':>8s}",
    ]
    for name, n in est.components.items():
        out.append(_line(name, n, "(1)" if name.startswith("reference") else ""))
    out.append(_line("= resident through the step", est.resident))
    out.append("training pass, at the end of the forward (the last pass's gradients still allocated)")
    for name, n in est.training.items():
        out.append(_line(name, n, indent=2))
        if name.startswith("activations"):
            for part, m in est.activations.items():
                if m:
                    out.append(_line(part, m, indent=4))
    out.append(_line("= end of the forward", est.forward_end))
    out.append(_line("  logits' gradient at the start of backward", est.logits_gradient, "(2)"))
    out.append(_line("= start of backward (the gradients freed)", est.backward_start))
    out.append(_line("= backward at the completions' embedding", est.backward_embedding, "(3)"))
    out.append(_line("= training peak", est.training_peak))
    out.append("generation (before the passes; its KV cache is freed after)")
    for name, n in est.generation.items():
        out.append(_line(name, n, indent=2))
    out.append(_line("= generation peak", est.generation_peak))
    out.append(_line("PEAK OF THE STEP", est.peak))
    other = "on" if ck.option.checkpointing else "off"
    out.append(_line(f"activations with gradient checkpointing {other}", ck.training["activations saved for backward"],
                     f"(peak {gib(ck.peak)} GiB)"))
    if current.lora_rank:
        ref_note = "none under LoRA: the reference is the policy with its adapters off"
    elif needed:
        ref_note = "kl_coef > 0: the loss needs it"
    else:
        ref_note = (f"kl_coef = 0: the loss does not need it, but train.py loads it for a full fine-tune anyway "
                    f"({gib(ref_bytes)} GiB) and runs it every kl_log_every = {t.kl_log_every} step(s) to log the KL")
    how = {"auto": "when the loss needs it", "always": "as train.py loads it (--reference always)",
           "never": "never (--reference never)"}[reference_mode]
    out += ["", f"(1) reference model, counted {how}: {ref_note}",
            "(2) the chunks' gradients and their concatenation, with every saved tensor still alive",
            "(3) the prompts' and vision tower's saved tensors, the text layers' gradients and the tied embedding's "
            "V x H gradients (its gradient, the embedding's, their sum); the peak is the largest of the 3 moments"]
    out += ["", "assumptions:"] + [f"- {a}" for a in assumptions(t, w, reference_mode, est)]
    rows = []
    out += ["", f"options (fits: peak <= {100 - int(HEADROOM * 100)}% of the card's GiB; * = params.yaml's current "
                "settings)", TABLE_HEAD]
    for opt in options(current, w.group, w.prompts):
        e = estimate(params, shape, w, opt, reference=counted)
        fit = [e.fits(g) for g in CARDS_GB]
        out.append(table_row("*" if opt == current else " ", opt, w, e))
        rows.append({**dataclasses.asdict(opt), "trainable": e.trainable, "peak_bytes": e.peak,
                     "peak_gib": round(e.peak / GiB, 3), "training_peak_bytes": e.training_peak,
                     "generation_peak_bytes": e.generation_peak, "current": opt == current,
                     **{f"fits_{g}gb": f for g, f in zip(CARDS_GB, fit, strict=True)}})
    out.append(f"  ckpt: train.gradient_checkpointing; LoRA: train.lora_rank (peft). rows/fwd {w.group}: one prompt's "
               f"group per training forward with gradients accumulated, which the trainer does not do (it runs all "
               f"{w.rows} rows at once).")
    if not counted and not needed:
        bf16_ref = params.total * 2
        out.append(f"  train.py also loads the reference model for a full fine-tune whatever kl_coef: add "
                   f"{gib(bf16_ref)} GiB to the full bf16-mixed rows, {gib(2 * bf16_ref)} GiB to the full fp32 rows "
                   "(--reference always counts it).")
    data = {
        "label": label, "profile": cfg.profile, "params": dataclasses.asdict(params) | {"total": params.total},
        "shape": dataclasses.asdict(shape), "workload": dataclasses.asdict(w) | {"rows": w.rows,
                                                                                 "prompt_len": w.prompt_len},
        "current": dataclasses.asdict(current), "reference": {"mode": reference_mode, "counted": counted,
                                                              "needed": needed, "bytes": ref_bytes},
        "components": est.components, "training": est.training, "activations": est.activations,
        "generation": est.generation, "resident_bytes": est.resident, "training_peak_bytes": est.training_peak,
        "generation_peak_bytes": est.generation_peak, "peak_bytes": est.peak,
        "checkpointing_toggled": {"activations": ck.training["activations saved for backward"], "peak_bytes": ck.peak},
        "headroom": HEADROOM, "cards_gb": list(CARDS_GB), "options": rows,
    }
    return "\n".join(out), data


def assumptions(t, w: Workload, reference_mode: str, est: Estimate) -> list[str]:
    grads = est.components["gradients (fp32, trainable)"]
    return [
        "one process, one GPU; every completion row runs to max_new_tokens (the completion width is the longest row)",
        "a left-padded prompt batch (an attention mask, so keys/values are expanded to all 12 heads for SDPA); "
        "SDPA's flash/memory-efficient kernels (no L x L attention matrix)",
        "fp32 master weights always (train.py loads fp32); bf16-mixed = bf16 autocast forward; AdamW's 2 fp32 states "
        "per trainable parameter",
        "peak = the largest of generation and three moments of a training pass: the end of its forward (the last "
        "pass's gradients are still allocated: zero_grad runs after the forward; running it before would free "
        f"{gib(grads)} GiB there), the start of backward, the completions' embedding gradient",
        "selective_log_softmax's 8-row chunks do not bound the training memory: each chunk's fp32 copy is saved",
        "LoRA rows (peft): rank r on q,k,v,o,gate,up,down of every text layer, vision tower frozen, no reference "
        "copy; the base stays fp32 as train.py loads it, so under bf16-mixed autocast casts the frozen weights afresh "
        "in each of the 2 forwards and keeps both casts for backward (a bf16 base would avoid both)",
        "checkpointing rows (vlm.enable_gradient_checkpointing): each decoder layer / vision block keeps its input, "
        "one layer is recomputed at a time; the ReplayableCache's snapshots keep the prompts' keys/values; with LoRA, "
        "transformers' enable_input_require_grads gives the frozen vision tower a graph (and a useless backward)",
        f"reference model: counted {'when kl_coef > 0' if reference_mode == 'auto' else reference_mode} (full "
        "fine-tune only); its no-grad forward, like generation, stays below the training peak",
        f"cards: {', '.join(map(str, CARDS_GB))} GB taken as GiB; {int(HEADROOM * 100)}% left for the CUDA context, "
        "workspaces and fragmentation",
    ]


# ----------------------------------------------------------------------------------------------------------
# --measure: the activation count against a CPU stand-in with the 2B widths


def standin_inputs(config, w: Workload, width: int, height: int, seed: int = 0, pad: int = 3):
    """Random prompts shaped like the real ones, and completions: (batch, completion_ids, completion_mask).

    Prompt: text, <|vision_start|>, the image's visual tokens, <|vision_end|>, text (``w.text_tokens`` in all);
    the last prompt is left-padded by ``pad`` tokens (a real batch has prompts of several lengths). Every
    completion row is ``max_new_tokens`` long.
    """
    import torch

    from stages.vlm.qwen2vl import patches_per_image  # noqa: F401  (the row order the model expects)

    shape = shape_of(config)
    gh, gw = image_grid(width, height, shape.patch, shape.merge)
    g = torch.Generator().manual_seed(seed)
    B, P, vis = w.prompts, w.prompt_len, w.visual_tokens
    first_special = config.text_config.bos_token_id
    ids = torch.randint(0, first_special, (B, P), generator=g)
    before = (w.text_tokens - 2) // 4
    ids[:, before] = config.vision_start_token_id
    ids[:, before + 1: before + 1 + vis] = config.image_token_id
    ids[:, before + 1 + vis] = config.vision_end_token_id
    attention = torch.ones(B, P, dtype=torch.long)
    attention[-1, :pad] = 0
    ids[-1, :pad] = config.text_config.pad_token_id
    batch = {
        "input_ids": ids,
        "attention_mask": attention,
        "mm_token_type_ids": (ids == config.image_token_id).int(),
        "pixel_values": torch.randn(B * gh * gw, shape.in_channels * shape.temporal_patch * shape.patch**2,
                                    generator=g),
        "image_grid_thw": torch.tensor([[1, gh, gw]] * B),
    }
    completion = torch.randint(0, first_special, (w.rows, w.max_new_tokens), generator=g)
    return batch, completion, torch.ones(w.rows, w.max_new_tokens, dtype=torch.bool)


def prepare_policy(model, option: Option):
    """The policy as ``GRPOTrainer`` prepares it: gradient checkpointing (``vlm.enable_gradient_checkpointing``),
    then LoRA through peft (``stages.training.lora.apply_lora``, the 7 text linears of every layer)."""
    from stages.vlm import qwen2vl as vlm

    if option.checkpointing:
        vlm.enable_gradient_checkpointing(model)
    if option.lora_rank:
        from stages.config import TrainParams
        from stages.training import lora

        model = lora.apply_lora(model, dataclasses.replace(TrainParams(), lora_rank=option.lora_rank))
    return model


def _saved_bytes(root, exclude: set[int]) -> int:
    """Bytes of the distinct storages the autograd graph under ``root`` keeps (``exclude``: parameters')."""
    import torch

    seen_nodes, storages, stack = set(), {}, [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen_nodes:
            continue
        seen_nodes.add(node)
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            try:
                value = getattr(node, attr)
            except RuntimeError:
                continue
            for t in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    if st.data_ptr() not in exclude:
                        storages[st.data_ptr()] = st.nbytes()
        stack.extend(f for f, _ in node.next_functions)
    return sum(storages.values())


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS


def _allocation_levels(prof, *windows: str) -> dict[str, tuple[int, int]]:
    """For each ``record_function`` window: (peak, end) bytes allocated above the level at its start, from the
    profiler's memory events (every CPU allocation and free made while profiling; frees of blocks allocated
    before profiling carry no size, so every window must only free what was allocated inside the profile)."""
    events = list(prof.profiler.kineto_results.events())
    memory = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    spans = {e.name(): (e.start_ns(), e.end_ns()) for e in events if e.name() in windows}
    out = {}
    for name in windows:
        start, end = spans[name]
        level = sum(n for t, n in memory if t < start)
        base, peak = level, level
        for t, n in memory:
            if start <= t <= end:
                level += n
                peak = max(peak, level)
        out[name] = (peak - base, level - base)
    return out


def measure_child(args: dict) -> dict:
    """Run in a fresh process: build the stand-in and measure the training forward and a trainer-like pass.

    (1) the bytes of the distinct storages the forward's graph saves (walking the graph; not under checkpointing,
    where a saved tensor is a placeholder that would recompute its layer), (2) the RSS high-water mark over the
    process's first forward above the RSS before it (VmHWM; the parent fixes glibc's mmap threshold so that freed
    blocks go back to the system and the RSS follows the allocations), (3) the allocator's peak over a forward
    (torch.profiler's memory events), (4) the allocator's peak over a pass run like the trainer's: forward with
    the previous pass's gradients still allocated, zero_grad(set_to_none), backward, above the level at its start.
    """
    import os
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    from transformers import Qwen2VLForConditionalGeneration

    from stages.vlm import qwen2vl as vlm

    torch.set_num_threads(args.get("threads") or os.cpu_count() or 1)
    t0 = time.perf_counter()
    w, option = Workload(**args["workload"]), Option(**args["option"])
    config = qwen2vl_2b_config(text_layers=args["layers"], vision_depth=args["vision_depth"], vocab_size=args["vocab"])
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = prepare_policy(Qwen2VLForConditionalGeneration(config).train(), option)
    batch, ids, mask = standin_inputs(config, w, args["width"], args["height"])
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=option.precision == "bf16-mixed"):
            return vlm.completion_logprobs(model, batch, ids, mask, group_size=w.group)

    def loss_of(logp):
        return -(logp.float() * mask).sum() / mask.sum()

    _reset_peak_rss()
    rss0 = _rss()
    logp = forward()
    rss_peak = _peak_rss() - rss0
    saved = None if option.checkpointing else _saved_bytes(logp.grad_fn, params)
    del logp
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function("plan:forward"):
            logp = forward()
        loss_of(logp).backward()  # the first pass's gradients
        del logp
        with record_function("plan:pass"):
            loss = loss_of(forward())
            model.zero_grad(set_to_none=True)
            loss.backward()
            del loss
    levels = _allocation_levels(prof, "plan:forward", "plan:pass")
    return {"saved": saved, "forward_peak": levels["plan:forward"][0], "forward_peak_rss": rss_peak,
            "pass_peak": levels["plan:pass"][0], "seconds": round(time.perf_counter() - t0, 1)}


MEASURED = (Option("fp32"), Option("bf16-mixed"), Option("bf16-mixed", checkpointing=True),
            Option("bf16-mixed", lora_rank=16), Option("bf16-mixed", checkpointing=True, lora_rank=16))


def measure(option: Option, w: Workload, *, layers: int = 2, vision_depth: int = 1, vocab: int = 151936,
            width: int = 480, height: int = 320, threads: int | None = None) -> dict:
    """:func:`measure_child` in a fresh Python process (clean RSS and allocator), and the estimate of the same
    shape under CPU autocast rules: saved = activations + saved logits + bf16 weight copies; the forward's peak
    adds the bf16 logits, a log-softmax buffer and the forward's KV cache; a pass peaks at the largest of the
    three moments (:class:`Estimate`), measured from a level that holds the previous pass's gradients."""
    import os
    import subprocess
    import sys

    args = {"option": dataclasses.asdict(option), "workload": dataclasses.asdict(w), "layers": layers,
            "vision_depth": vision_depth, "vocab": vocab, "width": width, "height": height,
            "threads": threads or os.cpu_count() or 1}
    code = "import json, sys; from stages.plan import measure_child; print(json.dumps(measure_child(json.loads(sys.argv[1]))))"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # fixed: blocks >= 128 KiB are unmapped when freed
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"measurement failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    config = qwen2vl_2b_config(text_layers=layers, vision_depth=vision_depth, vocab_size=vocab)
    params, shape = count_params(config), shape_of(config)
    est = estimate(params, shape, w, option, reference=False, autocast_device="cpu")
    saved = sum(est.training[k] for k in SAVED_PARTS)
    # on CPU the fp32 conv saves pixel_values themselves, allocated before the measured windows (on a GPU, the
    # batch's copy to the device is allocated in the forward)
    pixels = 0 if option.lora_rank or option.precision != "fp32" else \
        w.prompts * w.patches * shape.in_channels * shape.temporal_patch * shape.patch**2 * 4
    return {"option": dataclasses.asdict(option), "measured": measured,
            "estimate": {"saved": saved, "forward_peak": est.forward_end - est.resident - pixels,
                         "pass_peak": est.training_peak - est.resident - pixels,
                         "activations": est.training["activations saved for backward"]}}


def measure_report(results: list[dict], w: Workload, layers: int, vision_depth: int, vocab: int) -> str:
    out = [f"--measure: CPU stand-in with Qwen2-VL-2B's widths, {layers} text layer(s), {vision_depth} vision block(s), "
           f"vocab {vocab:,d}" + ("" if vocab == 151936 else " (shrunk)") + ", random weights;",
           f"  B = {w.prompts} x G = {w.group} rows, prompt {w.prompt_len} tokens (one left-padded by 3), "
           f"{w.max_new_tokens} new tokens; the estimate under CPU autocast rules (LayerNorm stays bf16 there)",
           f"  {'option':37s} {'what':40s} {'estimate MiB':>13s} {'measured MiB':>13s} {'ratio':>6s}"]
    for r in results:
        m, e, opt = r["measured"], r["estimate"], Option(**r["option"])
        name = f"{opt.precision}, " + (f"LoRA r={opt.lora_rank}" if opt.lora_rank else "full") + \
            (", checkpointing" if opt.checkpointing else "")
        # the activations alone: the graph's saved bytes less the saved logits and bf16 weight copies (arithmetic)
        acts = None if m["saved"] is None else m["saved"] - (e["saved"] - e["activations"])
        rows = [
            ("activations saved for backward (graph)", e["activations"], acts),
            ("all saved for backward (graph, exact)", e["saved"], m["saved"]),
            ("forward peak (allocator, profiler)", e["forward_peak"], m["forward_peak"]),
            ("forward peak (RSS high-water mark)", e["forward_peak"], m["forward_peak_rss"]),
            ("pass peak, old grads alive (allocator)", e["pass_peak"], m["pass_peak"]),
        ]
        for what, est_b, meas_b in rows:
            if meas_b is None:
                continue
            ratio = meas_b / est_b if est_b else math.nan
            out.append(f"  {name:37s} {what:40s} {est_b / 2**20:13.1f} {meas_b / 2**20:13.1f} {ratio:6.2f}")
    return "\n".join(out)


def to_jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ----------------------------------------------------------------------------------------------------------
# the command


def run(params: Path, profile: str, model_dir: Path | None = None, width: int = 480, height: int = 320,
        text_tokens: int = 60, reference: str = "auto", json_path: Path | None = None) -> str:
    """``vlm-grpo plan``: the printed plan (and ``json_path`` written) for params.yaml under ``profile``."""
    cfg = load_profile_config(params, profile)
    config = qwen2vl_2b_config() if model_dir is None else config_from_dir(model_dir)
    label = "Qwen2-VL-2B-Instruct's published shape" if model_dir is None else f"{Path(model_dir) / 'config.json'}"
    shape, counts = shape_of(config), count_params(config)
    lo, hi = image_pixel_limits(model_dir)
    w = workload_for(cfg.train, shape, width, height, text_tokens, lo, hi)
    world = cfg.execution.num_processes
    if world > 1:  # each process takes B / world prompts
        w = dataclasses.replace(w, prompts=max(1, w.prompts // world))
    text, data = plan_report(label=label, cfg=cfg, params=counts, shape=shape, w=w, current=current_option(cfg.train),
                             reference_mode=reference)
    if world > 1:
        text += f"\n  execution.num_processes = {world}: per process B = {w.prompts} prompts (one GPU each)"
    trainable = data["current"]["lora_rank"] and lora_params(shape, data["current"]["lora_rank"]) or counts.total
    disk_lines, disk = disk_report(cfg, counts, trainable, Path(cfg.fetch_data.raw_dir) if cfg.profile == "blog" else None)
    text += "\n" + "\n".join(disk_lines)
    data.update(disk)
    if json_path is not None:
        from stages.io import write_json

        write_json(Path(json_path), to_jsonable(data))
    return text


def run_measure(params: Path, profile: str, *, layers: int = 2, vision_depth: int = 1, vocab: int = 151936,
                prompts: int = 2, width: int = 480, height: int = 320, text_tokens: int = 60,
                configs: tuple[Option, ...] = MEASURED) -> str:
    """``vlm-grpo plan --measure``: estimate vs measurement on the CPU stand-in, G and T from the profile."""
    cfg = load_profile_config(params, profile)
    config = qwen2vl_2b_config(text_layers=layers, vision_depth=vision_depth, vocab_size=vocab)
    w = dataclasses.replace(workload_for(cfg.train, shape_of(config), width, height, text_tokens), prompts=prompts)
    results = [measure(o, w, layers=layers, vision_depth=vision_depth, vocab=vocab, width=width, height=height)
               for o in configs]
    return measure_report(results, w, layers, vision_depth, vocab)
