"""Shared fixtures: a tiny base model built (and briefly pretrained) once per test session, offline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# DVC writes a site cache outside the repo unless told otherwise: keep it in a temp dir during tests
os.environ.setdefault("DVC_SITE_CACHE_DIR", tempfile.mkdtemp(prefix="dvc-site-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (pyproject's addopts) each worker, and every stage it starts as a subprocess, gets its share
# of the cores (at least one thread): two torch processes on the same cores each at full width run 10-100x
# slower. Set before torch is imported, so its pools start at this width.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _share

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_processor():
    from stages.fetch_model import tokenizer_corpus
    from stages.vlm import qwen2vl as vlm

    tok = vlm.build_tokenizer(tokenizer_corpus(10), 1024)
    return vlm.VLProcessor(image_processor=vlm.build_image_processor(112), tokenizer=tok,
                           chat_template=tok.chat_template)


@pytest.fixture(scope="session")
def tiny_model(tiny_processor):
    from stages.vlm import qwen2vl as vlm

    model = vlm.build_tiny_model(vlm.tiny_config(tiny_processor.tokenizer), seed=0)
    return model.eval()


@pytest.fixture(scope="session")
def make_tiny_world(tiny_model, tiny_processor):
    """Factory: the tiny base model and a small CLEVR-mini (and optionally SuperCLEVR-mini) under ``root``."""
    from stages.counting.questions import save_dataset_atomic
    from stages.counting.sources import build_clevr_mini, build_superclevr_mini
    from stages.vlm import qwen2vl as vlm

    def make(root: Path, seed: int, n_train: int, n_heldout: int, n_superclevr: int = 0) -> Path:
        vlm.save_model_dir(tiny_model, tiny_processor, root / "base")
        save_dataset_atomic(build_clevr_mini(seed=seed, n_train=n_train, n_heldout=n_heldout, min_count=1,
                                             max_count=4, size=112), root / "data" / "clevr")
        if n_superclevr:
            save_dataset_atomic(build_superclevr_mini(seed=seed, n=n_superclevr, min_count=1, max_count=4, size=112),
                                root / "data" / "superclevr")
        return root

    return make


def pytest_collection_modifyitems(config, items):
    """The slow tests first: under xdist the longest file then starts at once on one worker while the others
    share the rest, instead of starting last and running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: files keep their order
