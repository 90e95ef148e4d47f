"""The GRPO training loop and its checkpoints: what the train stage runs."""
