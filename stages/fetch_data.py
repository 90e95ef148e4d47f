"""Stage ``fetch_data``: the counting datasets, in the real schemas, whatever the profile.

Writes ``OUT/clevr`` (a DatasetDict: ``train``, ``heldout``; columns image, problem, solution) and
``OUT/superclevr`` (a Dataset: image, question, ground_truth), each with ``save_to_disk``.
- mini: rendered offline by :mod:`stages.scenes` (CLEVR-mini and SuperCLEVR-mini).
- blog: ``leonardPKU/clevr_cogen_a_train`` (its last ``clevr_eval_rows`` rows held out) and the 200 SuperCLEVR
  counting questions, from local copies under ``raw_dir`` or from the hub.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from stages.counting import questions, sources

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)


def main(cfg: Config, out: Path) -> None:
    d = cfg.fetch_data
    if cfg.profile == "blog":
        raw = Path(d.raw_dir)
        clevr = sources.fetch_clevr_blog(repo_id=d.clevr_repo, eval_rows=d.clevr_eval_rows,
                                      raw_dir=raw / d.clevr_repo.split("/")[-1])
        superclevr = sources.fetch_superclevr_blog(raw_dir=raw / "superclevr", repo_id=d.superclevr_repo)
        if d.superclevr_check:  # the cross-domain test is R1-V's set, or the blog's numbers do not compare
            sources.verify_r1v_superclevr(superclevr, f"the SuperCLEVR set (from {raw / 'superclevr'} or {d.superclevr_repo})")
            log.info("SuperCLEVR: R1-V's 200 counting questions, its ground truths in its order")
    else:
        clevr = sources.build_clevr_mini(seed=d.seed, n_train=d.clevr_train, n_heldout=d.clevr_heldout,
                                      min_count=d.clevr_min_count, max_count=d.clevr_max_count, size=d.image_size)
        superclevr = sources.build_superclevr_mini(seed=d.seed, n=d.superclevr, min_count=d.superclevr_min_count,
                                                max_count=d.superclevr_max_count, size=d.image_size)
    questions.save_dataset_atomic(clevr, out / "clevr")
    questions.save_dataset_atomic(superclevr, out / "superclevr")
    log.info("wrote %s: clevr train %d, heldout %d; superclevr %d", out, len(clevr["train"]),
             len(clevr["heldout"]), len(superclevr))
