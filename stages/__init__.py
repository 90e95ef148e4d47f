"""GRPO with guidance injection for Qwen2-VL, as a DVC pipeline: the stages (one module each) and their core."""
