"""Checkpoints of a training run, and when one may be resumed.

A checkpoint holds the policy's weights (under LoRA only the trainable ones, the adapters: the base is the base
model's, which the fingerprint pins), the optimizer state and the run's records so far. It is resumed only
by a run that would have produced it: the same cell, the same training params, the same base weights (their
bytes) and the same training code, which is the static import closure of the train stage
(:mod:`stages.source_closure`): a change to a figure or a report table does not throw a run's progress away,
a change to the loss does.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from stages.io import atomic_dir, read_json, write_json
from stages.source_closure import PACKAGE_DIR, import_closure

log = logging.getLogger(__name__)

TRAIN_ENTRY = "stages.train"  # the module DVC's train stage runs (through the CLI)


def training_sources() -> list[Path]:
    """The package files the train stage runs."""
    return import_closure(TRAIN_ENTRY)


def fingerprint(params: dict, cell: str, base_dir: Path, sources: Sequence[Path] | None = None,
                source_root: Path | None = None) -> str:
    """What a checkpoint must match to be resumed: the cell, the params the trainer reads, the base model's
    bytes and the training code (``sources``, names relative to ``source_root``)."""
    h = hashlib.sha256()
    h.update(cell.encode())
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update((base_dir / "config.json").read_bytes())
    for f in sorted(base_dir.glob("*.safetensors")):
        _hash_file(h, f)
    root = PACKAGE_DIR if source_root is None else source_root
    for f in sorted(training_sources() if sources is None else sources):
        h.update(str(Path(f).relative_to(root)).encode())
        _hash_file(h, Path(f))
    return h.hexdigest()[:16]


def _hash_file(h, path: Path, chunk: int = 1 << 24) -> None:
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)


ADAPTERS = "adapters.safetensors"  # the trainable weights only (LoRA)


def save_checkpoint(ckpt_dir: Path, policy, optimizer, state: dict, trainable_only: bool = False) -> None:
    """Weights, optimizer state and ``state`` (JSON: next_step, records, fingerprint, ...), written atomically.

    ``trainable_only``: save the parameters that require gradients (LoRA's adapters), not the frozen base.
    """
    with atomic_dir(ckpt_dir) as tmp:
        if trainable_only:
            save_file({n: p.detach().contiguous() for n, p in policy.named_parameters() if p.requires_grad},
                      tmp / ADAPTERS)
        else:
            save_model(policy, tmp / "model.safetensors")  # handles the tied embedding / lm_head
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", state)


def _load_trainable(policy, path: Path, device) -> None:
    saved = load_file(path, device=str(device))
    params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        raise ValueError(f"{path}: holds other trainable weights than the policy's "
                         f"({len(set(saved) ^ set(params))} names differ)")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])


def load_checkpoint(ckpt_dir: Path, policy, optimizer, fp: str, device, trainable_only: bool = False) -> dict | None:
    """Restore a checkpoint whose fingerprint is ``fp`` into ``policy`` and ``optimizer``; returns its state,
    or None when there is none or it was made by other params, base weights or code. ``trainable_only`` as
    for :func:`save_checkpoint` (the frozen weights stay as loaded)."""
    state_path = ckpt_dir / "state.json"
    if not state_path.is_file():
        return None
    state = read_json(state_path)
    if state.get("fingerprint") != fp:
        log.warning("checkpoint in %s was made with other params, base model or training code: starting afresh",
                    ckpt_dir)
        return None
    if trainable_only:
        _load_trainable(policy, ckpt_dir / ADAPTERS, device)
    else:
        load_model(policy, ckpt_dir / "model.safetensors", device=str(device))
    optimizer.load_state_dict(torch.load(ckpt_dir / "optimizer.pt", weights_only=True))
    log.info("resuming from %s at step %d", ckpt_dir, state["next_step"])
    return state
