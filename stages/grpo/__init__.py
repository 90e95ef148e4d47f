"""The pure core of GRPO: rewards, group advantages, guidance injection, the clipped loss.

Nothing here knows about models, tokenizers or files; every function is tested on hand-computed cases in
tests/test_{rewards,advantages,injection,loss}.py. Import from the submodules (``stages.grpo.rewards``, ...):
this file imports nothing, so that reading the strategy names (stages.config) needs no torch.
"""
