"""Where a stage computes: one decision (``execution.device``), taken before any weights are loaded, and logged.

``auto`` takes this process's CUDA device when CUDA is usable and the CPU otherwise, except under the blog
profile, whose 2B model on a CPU would run for days: there an unusable CUDA (no GPU, or a driver too old for the
installed torch wheel, which torch reports only as a warning) or a GPU without bf16 stops the stage with one line,
and ``execution.device=cpu`` is the explicit way to run it on the CPU anyway. ``cuda`` requires CUDA in any
profile. Under a launcher (torchrun, ``accelerate launch``) each process takes ``cuda:LOCAL_RANK`` and binds it
(``torch.cuda.set_device``) before any other CUDA call, so nothing lands on GPU 0 by default.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """The device asked for (or the profile's default) cannot be used; the message is one line with the fix."""


@dataclass(frozen=True)
class CudaStatus:
    usable: bool
    bf16: bool
    reason: str  # why CUDA is not usable ("" when it is)


def cuda_status() -> CudaStatus:
    """Whether CUDA works here, and bf16 on it; torch's own warning (e.g. an old driver) becomes the reason."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        usable = torch.cuda.is_available()
    if not usable:
        said = " ".join(str(caught[-1].message).split())[:200] if caught else ""
        built = torch.version.cuda
        reason = said or ("this torch is a CPU build" if built is None else f"no CUDA device visible (torch built for CUDA {built})")
        return CudaStatus(False, False, reason)
    return CudaStatus(True, bool(torch.cuda.is_bf16_supported()), "")


def choose_device(requested: str, profile: str, needs_bf16: bool, status: CudaStatus | None = None,
                  local_rank: int | None = None) -> str:
    """``"cuda:N"`` or ``"cpu"`` for ``execution.device`` = ``requested`` (pure: ``status`` says what CUDA can do).

    Raises DeviceError when CUDA is required (``requested == "cuda"``, or ``auto`` under the blog profile) but
    unusable, or when the run computes in bf16 on a GPU without it.
    """
    status = cuda_status() if status is None else status
    rank = int(os.environ.get("LOCAL_RANK", 0)) if local_rank is None else local_rank
    if requested == "cpu":
        return "cpu"
    if requested not in ("auto", "cuda"):
        raise ValueError(f"execution.device must be auto, cuda or cpu, got {requested!r}")
    if not status.usable:
        if requested == "auto" and profile != "blog":
            return "cpu"
        why = "execution.device=cuda" if requested == "cuda" else "the blog profile"
        raise DeviceError(f"{why} needs a usable CUDA GPU, and CUDA is not usable here ({status.reason}); fix the "
                          "driver or torch build, or set execution.device=cpu to run on the CPU anyway")
    if needs_bf16 and not status.bf16:
        raise DeviceError("this run computes in bf16 (train.precision bf16-mixed or eval.dtype bfloat16) and this "
                          "GPU has no bf16; set train.precision=fp32 and eval.dtype=float32, or use a GPU with bf16")
    return f"cuda:{rank}"


def stage_device(stage: str, requested: str, blog: bool, needs_bf16: bool) -> str:
    """The device of ``stage`` (``execution.device`` = ``requested``; ``blog``: the blog profile; ``needs_bf16``:
    it computes in bf16): chosen, bound (CUDA), and logged. Call it before loading weights."""
    device = choose_device(requested, "blog" if blog else "mini", needs_bf16)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)  # before any other CUDA call: this process's GPU, not GPU 0
        log.info("%s: device %s (%s)", stage, device, torch.cuda.get_device_name(device))
    else:
        log.info("%s: device cpu (%d threads)", stage, torch.get_num_threads())
    return device
