"""Prompt styles of the study and the texts the mini world's base model is pretrained on.

Two prompt styles (blog 001_*, "Creating a Strong Baseline with R1V Prompting"):
- ``default``: the bare counting question; Qwen2-VL's chat template adds its default system prompt.
- ``r1v``: R1-V's system prompt plus a user suffix asking for ``<think>`` and ``<answer>`` tags.
"""

from __future__ import annotations

import random

R1V_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think>"
    "<answer> answer here </answer>"
)
R1V_SUFFIX = " Output the thinking process in <think> </think> and final answer (number) in <answer> </answer> tags."

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()


def number_word(n: int) -> str:
    """``3 -> "three"``; numbers past twenty fall back to digits (never needed by the mini world)."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def build_messages(style: str, question: str) -> list[dict]:
    """Chat messages for one counting question; the image goes first in the user turn, as in R1-V."""
    if style == "default":
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if style == "r1v":
        return [
            {"role": "system", "content": [{"type": "text", "text": R1V_SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question + R1V_SUFFIX}]},
        ]
    raise ValueError(f"unknown prompt style {style!r}: must be one of default, r1v")


def injected_completion(style: str, truth: int) -> str:
    """The guidance-injection text: a bare number for the default prompt, tags for R1V."""
    if style == "default":
        return str(truth)
    if style == "r1v":
        return f"<think>I count the objects in the image. There are {number_word(truth)}.</think><answer>{truth}</answer>"
    raise ValueError(f"unknown prompt style {style!r}: must be one of default, r1v")


# ----------------------------------------------------------------------------------------------------------
# The mini world's pretraining answers.  Under the default prompt the base model mostly answers in words
# (no extractable number), sometimes with a digit; under R1V it answers in tags.  `noun` is "objects" for
# CLEVR-like scenes and "vehicles" / "items" for SuperCLEVR-like ones.

WORD_TEMPLATES = (
    "I can see {w} {noun} on the floor.",
    "The image shows {w} {noun} arranged in the scene.",
    "Looking at the picture, there are {w} {noun} in total.",
    "There appear to be {w} {noun} in this image.",
    "In total, I count {w} distinct {noun}.",
    "This scene contains {w} {noun} with different colors.",
)
DIGIT_TEMPLATES = (
    "There are {n} {noun} in the image.",
    "I count {n} {noun}.",
    "The answer is {n}.",
    "{n}",
)
THINK_TEMPLATES = (
    "<think>I count the objects in the image. There are {w}.</think><answer>{n}</answer>",
    "<think>Counting the {noun} one by one, I find {w}.</think><answer>{n}</answer>",
    "<think>The image shows {w} {noun}.</think><answer>{n}</answer>",
)


def default_answer(rng: random.Random, said: int, noun: str, digit: bool) -> str:
    """A default-prompt answer that states the count ``said``: in words, or with a digit."""
    templates = DIGIT_TEMPLATES if digit else WORD_TEMPLATES
    return rng.choice(templates).format(n=said, w=number_word(said), noun=noun)


def r1v_answer(rng: random.Random, said: int, noun: str) -> str:
    """An R1V-style answer ``<think>...</think><answer>N</answer>`` stating the count ``said``."""
    return rng.choice(THINK_TEMPLATES).format(n=said, w=number_word(said), noun=noun)


def corpus_texts(max_count: int, questions: list[str]) -> list[str]:
    """Every text the mini tokenizer must cover: prompts, all answer templates, injected texts."""
    texts = [R1V_SYSTEM_PROMPT, "You are a helpful assistant."]
    texts += [q for q in questions] + [q + R1V_SUFFIX for q in questions]
    for n in range(max_count + 1):
        for noun in ("objects", "vehicles", "items"):
            for t in WORD_TEMPLATES + DIGIT_TEMPLATES + THINK_TEMPLATES:
                texts.append(t.format(n=n, w=number_word(n), noun=noun))
        texts += [injected_completion("default", n), injected_completion("r1v", n)]
    return texts
