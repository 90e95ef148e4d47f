"""Checkpoints of a training run, and when one may be resumed.

A cell keeps one checkpoint, its newest: each save writes a complete new directory beside the old one and then
swaps them (:func:`stages.io.atomic_dir`), so a kill at any moment leaves one valid checkpoint (if it lands
between the two renames, the old one is found under its temporary name), and the train stage deletes it once
the cell's outputs are written. A full fine-tune of the 2B model writes 26.5 GB each time (fp32 weights and
AdamW state): the disk a run needs is one checkpoint per cell in training, not one per save.

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
import shutil
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
    for stale in ckpt_dir.parent.glob(f".{ckpt_dir.name}.old-*"):  # a copy left by a kill mid-swap: superseded
        shutil.rmtree(stale, ignore_errors=True)


def _load_trainable(policy, path: Path, device) -> None:
    saved = load_file(path, device=str(device))
    params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        raise ValueError(f"{path}: holds other trainable weights than the policy's "
                         f"({len(set(saved) ^ set(params))} names differ)")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])


def _complete(ckpt_dir: Path) -> Path | None:
    """The directory holding the cell's complete checkpoint: ``ckpt_dir``, or, after a kill between the two
    renames of a save, the previous one under its temporary name (``.NAME.old-PID``, see atomic_dir)."""
    if (ckpt_dir / "state.json").is_file():
        return ckpt_dir
    old = sorted(ckpt_dir.parent.glob(f".{ckpt_dir.name}.old-*")) if ckpt_dir.parent.is_dir() else []
    return next((d for d in old if (d / "state.json").is_file()), None)


def delete_checkpoint(ckpt_dir: Path) -> None:
    """Remove a cell's checkpoint (and any half-written or superseded copy of it): its outputs are written."""
    for d in [ckpt_dir, *ckpt_dir.parent.glob(f".{ckpt_dir.name}.old-*"), *ckpt_dir.parent.glob(f".{ckpt_dir.name}.tmp-*")]:
        shutil.rmtree(d, ignore_errors=True)
    log.info("deleted the checkpoint %s (the cell's outputs are written)", ckpt_dir)


def load_checkpoint(ckpt_dir: Path, policy, optimizer, fp: str, device, trainable_only: bool = False) -> dict | None:
    """Restore a checkpoint whose fingerprint is ``fp`` into ``policy`` and ``optimizer``; returns its state,
    or None when there is none or it was made by other params, base weights or code. ``trainable_only`` as
    for :func:`save_checkpoint` (the frozen weights stay as loaded). Every tensor lands on ``device`` (the
    optimizer state too: without ``map_location`` each rank would put its copy where it was saved, GPU 0)."""
    found = _complete(ckpt_dir)
    if found is None:
        return None
    ckpt_dir, state_path = found, found / "state.json"
    device = torch.device(device)
    device = "cpu" if device.type == "cpu" else str(device)  # under DDP on CPU accelerate says cpu:0; safetensors wants cpu
    state = read_json(state_path)
    if state.get("fingerprint") != fp:
        log.warning("checkpoint in %s was made with other params, base model or training code: starting afresh",
                    ckpt_dir)
        return None
    if trainable_only:
        _load_trainable(policy, ckpt_dir / ADAPTERS, device)
    else:
        load_model(policy, ckpt_dir / "model.safetensors", device=str(device))
    optimizer.load_state_dict(torch.load(ckpt_dir / "optimizer.pt", map_location=device, weights_only=True))
    log.info("resuming from %s at step %d", ckpt_dir, state["next_step"])
    return state


def resume_checkpoint(ckpt_dir: Path, policy, optimizer, fp: str, device, trainable_only: bool = False) -> dict | None:
    """:func:`load_checkpoint` on rank 0 only, then rank 0's state, weights and optimizer state sent to every rank.

    Ranks on other nodes may have no copy of the checkpoint, or an older one: whatever they hold locally is never
    read, so all ranks resume from one checkpoint (or all start afresh). One process: plain load_checkpoint.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return load_checkpoint(ckpt_dir, policy, optimizer, fp, device, trainable_only)
    rank0 = dist.get_rank() == 0
    box = [load_checkpoint(ckpt_dir, policy, optimizer, fp, device, trainable_only) if rank0 else None]
    dist.broadcast_object_list(box, src=0)
    state = box[0]
    if state is None:
        return None
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad or not trainable_only:
                dist.broadcast(p.data, src=0)
    broadcast_optimizer_state(optimizer, device)
    return state


def broadcast_optimizer_state(optimizer, device) -> None:
    """Give every rank rank 0's optimizer state: its layout as an object, then each tensor by broadcast (on
    ``device``, which NCCL needs), each put back where rank 0 keeps it (AdamW's ``step`` stays on the CPU)."""
    import torch.distributed as dist

    rank0 = dist.get_rank() == 0
    sd = optimizer.state_dict() if rank0 else None
    layout = None
    if rank0:  # tensors replaced by (shape, dtype, device)
        layout = {"param_groups": sd["param_groups"],
                  "state": {k: {n: ("tensor", tuple(v.shape), str(v.dtype).removeprefix("torch."), str(v.device))
                                if torch.is_tensor(v) else v for n, v in entry.items()}
                            for k, entry in sd["state"].items()}}
    box = [layout]
    dist.broadcast_object_list(box, src=0)
    layout = box[0]
    state = {}
    for k in sorted(layout["state"]):
        entry = {}
        for n in sorted(layout["state"][k]):
            v = layout["state"][k][n]
            if isinstance(v, tuple) and v[:1] == ("tensor",):
                _, shape, dtype, where = v
                t = sd["state"][k][n].to(device) if rank0 else torch.empty(shape, dtype=getattr(torch, dtype), device=device)
                dist.broadcast(t, src=0)
                entry[n] = t.to(where)
            else:
                entry[n] = v
        state[k] = entry
    if not rank0:
        optimizer.load_state_dict({"state": state, "param_groups": layout["param_groups"]})
