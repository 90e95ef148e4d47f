"""Inputs for rehearsing the blog profile offline: the real datasets' layouts and a Qwen2-VL-2B-shaped stand-in.

``vlm-grpo rehearsal-inputs`` writes, under ``RAW`` (``data/raw``, where the blog profile looks first):
- ``clevr_cogen_a_train/data/train-00000-of-00001.parquet``: rows in ``leonardPKU/clevr_cogen_a_train``'s layout
  (``image`` {bytes, path} as PNG at 480x320, every third RGBA; ``problem``; ``solution`` ``<answer> N </answer>``);
- ``superclevr/``: R1-V's ``superclevr_test200_counting_problems.jsonl`` (``image_path``, ``question``,
  ``ground_truth``, counts 3-10) and ``images/superCLEVR_new_0250NN.png`` (480x320);
- ``Qwen2-VL-2B-Instruct/``: a directory as ``hf download`` leaves it: the 2B's config (every width,
  the 151,936-token vocabulary, rope, the special-token ids) with only a few layers, random bf16 safetensors,
  a tokenizer with Qwen2-VL's chat template and special tokens at their real ids, and the real image processor
  settings (a 480x320 image -> 187 visual tokens).

Scenes come from the project's renderer (square), centred on a 480x320 canvas of the scene's floor colour, so the
count is unchanged. The numbers a rehearsal produces are meaningless (random weights); what it proves is that the
blog profile's code path runs at the real shapes.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from stages.counting.questions import CLEVR_PROBLEM
from stages.counting.sources import CLEVR_REPO, SUPERCLEVR_JSONL, superclevr_questions
from stages.io import atomic_dir

log = logging.getLogger(__name__)

REAL_SIZE = (480, 320)  # (width, height) of CLEVR and SuperCLEVR images
SCENE_SIZE = 320  # the renderer draws squares: a 320 px scene centred on the 480x320 canvas
STANDIN_DIR = "Qwen2-VL-2B-Instruct"


def on_real_canvas(scene: Image.Image, size: tuple[int, int] = REAL_SIZE) -> Image.Image:
    """A square scene centred on a ``size`` canvas filled with its top-left (floor / sky) colour."""
    canvas = Image.new("RGB", size, scene.getpixel((0, 0)))
    canvas.paste(scene, ((size[0] - scene.width) // 2, (size[1] - scene.height) // 2))
    return canvas


def png_bytes(img: Image.Image, rgba: bool = False) -> bytes:
    buf = io.BytesIO()
    (img.convert("RGBA") if rgba else img).save(buf, format="PNG")
    return buf.getvalue()


def clevr_counts(n: int, seed: int, low: int = 3, high: int = 10) -> list[int]:
    return [int(c) for c in np.random.default_rng(seed).integers(low, high + 1, n)]


def write_clevr_layout(out_dir: Path, n: int, seed: int = 0) -> Path:
    """``n`` CLEVR counting rows as leonardPKU/clevr_cogen_a_train's parquet (every third image RGBA)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stages.scenes import render_clevr_scene

    rng = np.random.default_rng(seed)
    images, solutions = [], []
    for i, count in enumerate(clevr_counts(n, seed)):
        scene, _ = render_clevr_scene(rng, count, size=SCENE_SIZE)
        images.append({"bytes": png_bytes(on_real_canvas(scene), rgba=i % 3 == 2), "path": None})
        solutions.append(f"<answer> {count} </answer>")
    table = pa.table({
        "image": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "problem": [CLEVR_PROBLEM] * n,
        "solution": solutions,
    })
    # HF's Image feature in the schema metadata, as the hub's parquet files carry it
    features = {"image": {"_type": "Image"}, "problem": {"dtype": "string", "_type": "Value"},
                "solution": {"dtype": "string", "_type": "Value"}}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    with atomic_dir(out_dir) as tmp:
        (tmp / "data").mkdir()
        pq.write_table(table, tmp / "data" / "train-00000-of-00001.parquet")
    return out_dir


def write_superclevr_layout(out_dir: Path, n: int, seed: int = 0) -> Path:
    """``n`` SuperCLEVR counting questions in R1-V's layout: the jsonl and images/ (480x320 PNG, counts 3-10)."""
    from stages.scenes import render_superclevr_scene

    rng = np.random.default_rng(seed + 1)
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i, (count, question) in enumerate(zip(clevr_counts(n, seed + 1), superclevr_questions(n), strict=True)):
            scene, _ = render_superclevr_scene(rng, count, size=SCENE_SIZE)
            name = f"superCLEVR_new_{25000 + i:06d}.png"
            (tmp / "images" / name).write_bytes(png_bytes(on_real_canvas(scene)))
            lines.append({"image_path": f"images/{name}", "question": question, "ground_truth": count})
        (tmp / SUPERCLEVR_JSONL).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out_dir


def write_standin_model(out_dir: Path, text_layers: int = 1, vision_depth: int = 1, seed: int = 0) -> Path:
    """A Qwen2-VL-2B-Instruct-shaped directory with ``text_layers`` / ``vision_depth`` layers of random weights,
    stored in bf16 as the hub's copy is."""
    import torch

    from stages.fetch_model import tokenizer_corpus
    from stages.vlm import qwen2vl as vlm

    tokenizer = vlm.build_standin_tokenizer(tokenizer_corpus(10))
    config = vlm.standin_config(tokenizer, text_layers=text_layers, vision_depth=vision_depth)
    model = vlm.build_tiny_model(config, seed).to(torch.bfloat16)
    processor = vlm.VLProcessor(image_processor=vlm.real_image_processor(), tokenizer=tokenizer,
                                chat_template=tokenizer.chat_template)
    with atomic_dir(out_dir) as tmp:
        vlm.save_model_dir(model, processor, tmp)
    return out_dir


def main(raw_dir: Path, clevr_rows: int, superclevr_questions_n: int, text_layers: int, vision_depth: int,
         seed: int = 0) -> dict[str, Path]:
    raw_dir = Path(raw_dir)
    written = {
        "clevr": write_clevr_layout(raw_dir / CLEVR_REPO.split("/")[-1], clevr_rows, seed),
        "superclevr": write_superclevr_layout(raw_dir / "superclevr", superclevr_questions_n, seed),
        "model": write_standin_model(raw_dir / STANDIN_DIR, text_layers, vision_depth, seed),
    }
    for what, path in written.items():
        log.info("wrote %s: %s", what, path)
    return written
