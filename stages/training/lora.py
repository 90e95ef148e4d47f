"""LoRA through peft (``train.lora_rank > 0``): adapters on the language model's linear layers, never the vision
tower; the frozen base doubles as the reference model; the saved model is merged.

Imported only when ``train.lora_rank > 0``: a full fine-tune never imports peft.

- :func:`apply_lora` wraps the policy before Accelerate's prepare; only the adapters then require gradients, so
  AdamW (which takes the trainable parameters) holds state for them alone;
- :func:`base_model` is the policy with its adapters switched off: exactly the base model, so the KL reference
  needs no second copy of the weights;
- :func:`merged_policy` folds the adapters into the base weights (W + B A * alpha / r): a plain Qwen2-VL that
  ``vlm.save_model_dir`` writes and ``vlm.load_model`` reads like any other, so the evals need no change.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from peft import LoraConfig, get_peft_model

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import TrainParams

# Qwen2VLForConditionalGeneration's decoder layers; the vision tower is model.visual (qkv, proj, fc1, fc2, merger)
DECODER_LAYERS = r"model\.language_model\.layers\.\d+"


def target_pattern(targets: list[str]) -> str:
    """peft's ``target_modules`` as a regex (matched against full module names): ``targets`` of the decoder only."""
    return rf"{DECODER_LAYERS}\.(?:self_attn|mlp)\.(?:{'|'.join(targets)})"


def apply_lora(model, params: TrainParams):
    """The policy with LoRA adapters of rank ``params.lora_rank`` on ``params.lora_targets`` (peft ``PeftModel``);
    the base weights are frozen, the adapters start as a no-op (B = 0)."""
    config = LoraConfig(r=params.lora_rank, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                        target_modules=target_pattern(params.lora_targets), bias="none")
    layers = model.config.get_text_config().num_hidden_layers
    with warnings.catch_warnings():  # peft asks transformers 5's deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    adapted = peft_model.base_model.targeted_module_names
    if len(adapted) != layers * len(params.lora_targets) or any(".visual." in name for name in adapted):
        raise RuntimeError(f"LoRA adapted {len(adapted)} modules, expected {layers} decoder layers x "
                           f"{len(params.lora_targets)} targets: the model's module names are not Qwen2-VL's")
    return peft_model


def base_model(peft_model):
    """Context manager: inside it, ``peft_model`` computes with its adapters off (the base model's outputs)."""
    return peft_model.disable_adapter()


def merged_policy(peft_model):
    """The adapters merged into the base weights: a plain Qwen2-VL model (``peft_model`` is consumed)."""
    return peft_model.merge_and_unload()
