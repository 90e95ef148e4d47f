"""The blog profile's offline rehearsal, piece by piece: real-layout data the blog readers accept, a stand-in with
Qwen2-VL-2B-Instruct's shape, and fetch_model taking a local copy before the hub. The end-to-end run itself
(`bash scripts/rehearse_blog.sh`, about 15 minutes on 2 cores) is too long for the suite; README has it."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from stages import rehearsal
from stages.vlm import qwen2vl as vlm


def test_clevr_layout_is_what_the_blog_reader_takes(tmp_path):
    from stages.counting.sources import fetch_clevr_blog

    out = rehearsal.write_clevr_layout(tmp_path / "clevr_cogen_a_train", n=6, seed=0)
    table = pq.read_table(out / "data" / "train-00000-of-00001.parquet")
    assert table.column_names == ["image", "problem", "solution"]
    rows = table.to_pylist()
    modes = [Image.open(io.BytesIO(r["image"]["bytes"])).mode for r in rows]
    assert modes == ["RGB", "RGB", "RGBA"] * 2  # the hub's copy holds some RGBA PNGs
    assert {Image.open(io.BytesIO(r["image"]["bytes"])).size for r in rows} == {(480, 320)}
    counts = rehearsal.clevr_counts(6, 0)
    assert [r["solution"] for r in rows] == [f"<answer> {c} </answer>" for c in counts]
    assert all(r["problem"] == "How many items are there in the image?" for r in rows)

    ds = fetch_clevr_blog(raw_dir=out, eval_rows=2)
    assert len(ds["train"]) == 4 and len(ds["heldout"]) == 2
    assert ds["train"][0]["image"].mode == "RGB" and ds["train"][0]["image"].size == (480, 320)


def test_superclevr_layout_is_r1v_s(tmp_path):
    from stages.counting.sources import SUPERCLEVR_JSONL, fetch_superclevr_blog

    out = rehearsal.write_superclevr_layout(tmp_path / "superclevr", n=5, seed=0)
    lines = [json.loads(x) for x in (out / SUPERCLEVR_JSONL).read_text().splitlines()]
    assert [x["image_path"] for x in lines] == [f"images/superCLEVR_new_{25000 + i:06d}.png" for i in range(5)]
    assert all(3 <= x["ground_truth"] <= 10 for x in lines)
    assert all(Image.open(out / x["image_path"]).size == (480, 320) for x in lines)
    ds = fetch_superclevr_blog(raw_dir=out)
    assert [int(g) for g in ds["ground_truth"]] == [x["ground_truth"] for x in lines]


def test_a_scene_keeps_its_count_on_the_real_canvas():
    square = Image.new("RGB", (320, 320), (10, 20, 30))
    square.putpixel((100, 100), (255, 0, 0))
    canvas = rehearsal.on_real_canvas(square)
    assert canvas.size == (480, 320)
    assert canvas.getpixel((0, 0)) == (10, 20, 30)  # padded with the floor colour
    assert canvas.getpixel((180, 100)) == (255, 0, 0)  # the scene, whole, centred


@pytest.fixture(scope="module")
def standin_tokenizer():
    from stages.fetch_model import tokenizer_corpus

    return vlm.build_standin_tokenizer(tokenizer_corpus(10))


def test_standin_tokenizer_has_the_real_special_ids_and_template(standin_tokenizer):
    tok = standin_tokenizer
    assert len(tok) == 151657  # as Qwen2-VL-2B-Instruct's tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in vlm.SPECIAL_TOKENS] == list(range(151643, 151657))
    assert tok.chat_template == vlm.CHAT_TEMPLATE
    text = "How many items are there in the image? <answer> 3 </answer>"
    ids = tok(text).input_ids
    assert max(ids) < 2000 and tok.decode(ids) == text  # real text never lands on the filler entries


def test_standin_config_has_the_2b_shape_with_fewer_layers(standin_tokenizer):
    config = vlm.standin_config(standin_tokenizer, text_layers=1, vision_depth=1)
    t, v = config.text_config, config.vision_config
    assert (t.hidden_size, t.intermediate_size, t.num_attention_heads, t.num_key_value_heads, t.vocab_size) == \
        (1536, 8960, 12, 2, 151936)
    assert t.rope_parameters["rope_theta"] == 1e6 and t.rope_parameters["mrope_section"] == [16, 24, 24]
    assert (v.embed_dim, v.num_heads, v.patch_size, v.spatial_merge_size, v.temporal_patch_size, v.hidden_size) == \
        (1280, 16, 14, 2, 2, 1536)
    assert t.num_hidden_layers == 1 and v.depth == 1
    assert (config.image_token_id, config.vision_start_token_id, t.eos_token_id) == (151655, 151652, 151645)


def test_fetch_model_takes_a_local_copy_before_the_hub(tmp_path, tiny_model, tiny_processor, repo_root):
    import yaml

    from stages import fetch_model
    from stages.config import config_from_dict

    local = tmp_path / "raw" / "Qwen2-VL-2B-Instruct"
    vlm.save_model_dir(tiny_model, tiny_processor, local)
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["profile"] = "blog"
    raw["fetch_model"]["local_dir"] = str(local)
    cfg = config_from_dict(raw)
    metrics = fetch_model.main(cfg, tmp_path / "models" / "base", tmp_path / "fetch_model.json")
    assert metrics["source"] == str(local)
    copied = sorted(p.name for p in (tmp_path / "models" / "base").iterdir())
    assert copied == sorted(p.name for p in local.iterdir())
    model, _ = vlm.load_model(tmp_path / "models" / "base")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in tiny_model.parameters())


@pytest.mark.parametrize(("config", "dtype"), [({"torch_dtype": "bfloat16"}, "bfloat16"), ({"dtype": "float32"}, "float32"),
                                               ({}, "float32")])
def test_stored_dtype_reads_what_the_hub_and_save_pretrained_write(tmp_path, config, dtype):
    """The hub's Qwen2-VL-2B-Instruct says torch_dtype bfloat16 (transformers 5 writes dtype): a trained cell is
    stored in that dtype, half the disk of fp32."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert vlm.stored_dtype(tmp_path) == dtype
