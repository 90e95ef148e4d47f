"""Datasets: mini builders, atomic saving, validation on load, blog loaders against local fixtures.

No test touches the network: hub calls are monkeypatched, blog data are tiny fixtures in tmp_path.
"""

from __future__ import annotations

import io
import json
import re

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from stages.counting import questions as Q
from stages.counting import sources as S
from stages.scenes import render_clevr_scene

# --------------------------------------------------------------------------- fixtures


def _png(color=(200, 30, 30, 255), mode="RGBA", size=(24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color[: len(mode)] if mode != "L" else color[0]).save(buf, "PNG")
    return buf.getvalue()


def _clevr_ds(n=4, solutions=None, images=None, drop=None) -> Dataset:
    cols = {
        "image": images or [{"bytes": _png(mode="RGB"), "path": None} for _ in range(n)],
        "problem": [Q.CLEVR_PROBLEM] * n,
        "solution": solutions or [Q.format_solution(i + 1) for i in range(n)],
    }
    feats = dict(Q.CLEVR_FEATURES)
    if drop:
        cols.pop(drop)
        feats.pop(drop)
    return Dataset.from_dict(cols, features=Features(feats))


def _superclevr_ds(n=3, ground_truth=None, gt_feature=None) -> Dataset:
    return Dataset.from_dict(
        {
            "image": [{"bytes": _png(mode="RGB"), "path": None} for _ in range(n)],
            "question": ["How many different items are there in the image?"] * n,
            "ground_truth": ground_truth if ground_truth is not None else [3 + i for i in range(n)],
        },
        features=Features(
            {"image": ImageFeature(), "question": Value("string"), "ground_truth": gt_feature or Value("int64")}
        ),
    )


@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to reach the hub fails the way it does offline."""
    calls = []

    def offline(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConnectionError("Couldn't reach 'x' on the Hub (LocalEntryNotFoundError)\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    return calls


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer> 3 </answer>", 3),
        ("<answer>10</answer>", 10),
        (" <answer>  0 </answer>\n", 0),
        ("<answer> +7 </answer>", 7),
    ],
)
def test_parse_solution_accepts_integers(text, expected):
    assert Q.parse_solution(text) == expected


@pytest.mark.parametrize(
    "text", ["<answer> three </answer>", "<answer> 3.5 </answer>", "3", "<answer></answer>", "", None]
)
def test_parse_solution_rejects_non_integers(text):
    with pytest.raises(Q.DataError, match="answer"):
        Q.parse_solution(text)


def test_format_solution_round_trips():
    assert Q.format_solution(4) == "<answer> 4 </answer>"
    assert all(Q.parse_solution(Q.format_solution(k)) == k for k in range(12))


# --------------------------------------------------------------------------- mini builders


def test_build_clevr_mini_schema_answers_and_disjoint_splits():
    dd = S.build_clevr_mini(seed=5, n_train=20, n_heldout=10, min_count=1, max_count=6, size=112)
    assert isinstance(dd, DatasetDict) and set(dd) == {"train", "heldout"}
    assert len(dd["train"]) == 20 and len(dd["heldout"]) == 10
    for split in dd.values():
        assert split.features == Q.CLEVR_FEATURES
        assert set(split["problem"]) == {"How many items are there in the image?"}
        assert all(re.fullmatch(r"<answer> \d+ </answer>", s) for s in split["solution"])

    # The answer is the number of objects drawn: re-render from the same streams.
    rng_train, rng_heldout = S.clevr_streams(5)
    again = S.render_examples(render_clevr_scene, rng_train, 20, 1, 6, 112)
    raw = dd["train"].cast_column("image", ImageFeature(decode=False))
    for i, ex in enumerate(again):
        assert raw[i]["image"]["bytes"] == ex.png
        assert Q.parse_solution(raw[i]["solution"]) == ex.count == len(ex.objects)
    counts = [Q.parse_solution(s) for s in dd["train"]["solution"]]
    assert min(counts) >= 1 and max(counts) <= 6 and len(set(counts)) >= 3

    held = dd["heldout"].cast_column("image", ImageFeature(decode=False))
    train_bytes = {r["bytes"] for r in raw["image"]}
    assert not train_bytes & {r["bytes"] for r in held["image"]}


def test_render_examples_redraws_an_excluded_image():
    first = S.render_examples(render_clevr_scene, np.random.default_rng(0), 1, 1, 1, 64)[0]
    redrawn = S.render_examples(render_clevr_scene, np.random.default_rng(0), 1, 1, 1, 64, exclude={first.sha256})[0]
    assert redrawn.png != first.png
    assert redrawn.count == 1


def test_build_clevr_mini_is_deterministic():
    a = S.build_clevr_mini(1, 3, 2, 2, 4, 64)
    b = S.build_clevr_mini(1, 3, 2, 2, 4, 64)
    for split in ("train", "heldout"):
        ra = a[split].cast_column("image", ImageFeature(decode=False))
        rb = b[split].cast_column("image", ImageFeature(decode=False))
        assert ra["image"] == rb["image"] and ra["solution"] == rb["solution"]


def test_build_superclevr_mini_defaults():
    ds = S.build_superclevr_mini(seed=0)
    assert len(ds) == 200
    assert ds.features == Q.SUPERCLEVR_FEATURES
    questions = ds["question"]
    # The real benchmark's phrasing is there, and so are the others (varied phrasing).
    assert "How many different items are there in the image?" in questions
    assert set(questions) == set(Q.SUPERCLEVR_QUESTIONS)
    assert len(Q.SUPERCLEVR_QUESTIONS) >= 4
    gts = ds["ground_truth"]
    assert all(isinstance(g, int) and 3 <= g <= 10 for g in gts)
    img = ds[0]["image"]
    assert img.size == (112, 112)


def test_build_superclevr_mini_small_range():
    ds = S.build_superclevr_mini(seed=1, n=12, min_count=1, max_count=2, size=64)
    assert len(ds) == 12 and set(ds["ground_truth"]) <= {1, 2}
    assert ds[0]["image"].size == (64, 64)


# --------------------------------------------------------------------------- save + load


def test_save_then_load_round_trip(tmp_path):
    dd = S.build_clevr_mini(seed=2, n_train=6, n_heldout=4, min_count=1, max_count=5, size=112)
    out = tmp_path / "datasets" / "clevr"
    Q.save_dataset_atomic(dd, out)
    train = Q.load_counting_split(out / "train", "clevr")
    held = Q.load_counting_split(out, "clevr", split="heldout")
    assert len(train) == 6 and len(held) == 4
    assert train.answers == [Q.parse_solution(s) for s in dd["train"]["solution"]]
    ex = train[3]
    assert isinstance(ex, Q.CountingExample)
    assert ex.row == 3 and ex.question == Q.CLEVR_PROBLEM and ex.answer == train.answers[3]
    assert ex.image.mode == "RGB" and ex.image.size == (112, 112)
    assert np.array_equal(np.asarray(ex.image), np.asarray(dd["train"][3]["image"].convert("RGB")))
    assert [e.row for e in held] == [0, 1, 2, 3]
    assert [e.row for e in held[1:3]] == [1, 2]
    assert held[-1].row == 3
    with pytest.raises(IndexError):
        held[4]

    sc = S.build_superclevr_mini(seed=0, n=5, min_count=3, max_count=4, size=112)
    Q.save_dataset_atomic(sc, tmp_path / "datasets" / "superclevr")
    s = Q.load_counting_split(tmp_path / "datasets" / "superclevr", "superclevr")
    assert s.answers == sc["ground_truth"] and s[0].question == sc[0]["question"]
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["clevr", "superclevr"]


def test_save_replaces_an_existing_directory(tmp_path):
    out = tmp_path / "sc"
    Q.save_dataset_atomic(_superclevr_ds(3), out)
    Q.save_dataset_atomic(_superclevr_ds(5), out)
    assert len(Q.load_counting_split(out, "superclevr")) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["sc"]  # no temp or backup left


def test_failed_save_leaves_the_old_directory_intact(tmp_path, monkeypatch):
    out = tmp_path / "sc"
    Q.save_dataset_atomic(_superclevr_ds(3), out)

    def half_write(self, path, *args, **kwargs):
        (tmp_path / path).mkdir(parents=True, exist_ok=True)
        (tmp_path / path / "partial.arrow").write_bytes(b"xx")
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_to_disk", half_write)
    with pytest.raises(OSError, match="disk full"):
        Q.save_dataset_atomic(_superclevr_ds(5), out)
    monkeypatch.undo()
    assert len(Q.load_counting_split(out, "superclevr")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["sc"]


# --------------------------------------------------------------------------- validation errors


def _saved(tmp_path, ds, name="ds"):
    out = tmp_path / name
    Q.save_dataset_atomic(ds, out)
    return out


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_missing_directory(tmp_path):
    with pytest.raises(Q.DataError) as e:
        Q.load_counting_split(tmp_path / "nope", "clevr")
    msg = _one_line(e)
    assert str(tmp_path / "nope") in msg and "dvc repro fetch_data" in msg


def test_missing_column(tmp_path):
    out = _saved(tmp_path, _clevr_ds(drop="solution"))
    with pytest.raises(Q.DataError) as e:
        Q.load_counting_split(out, "clevr")
    msg = _one_line(e)
    assert "solution" in msg and str(out) in msg and "missing column" in msg


def test_bad_solution_names_the_row(tmp_path):
    out = _saved(tmp_path, _clevr_ds(3, solutions=["<answer> 1 </answer>", "<answer> three </answer>", "x"]))
    with pytest.raises(Q.DataError) as e:
        Q.load_counting_split(out, "clevr")
    msg = _one_line(e)
    assert str(out) in msg and "row 1" in msg and "three" in msg


@pytest.mark.parametrize(
    ("values", "feature"),
    [(["3", "4"], Value("string")), ([3.0, 4.5], Value("float64")), ([3, None], Value("int64"))],
)
def test_non_int_ground_truth_names_the_row(tmp_path, values, feature):
    out = _saved(tmp_path, _superclevr_ds(2, ground_truth=values, gt_feature=feature))
    with pytest.raises(Q.DataError) as e:
        Q.load_counting_split(out, "superclevr")
    msg = _one_line(e)
    assert "ground_truth" in msg and "not an int" in msg and re.search(r"row [01]", msg)


def test_corrupt_image_names_the_row(tmp_path):
    images = [{"bytes": _png(mode="RGB"), "path": None} for _ in range(3)]
    images[2] = {"bytes": b"\x89PNG\r\n\x1a\nnot really a png", "path": None}
    out = _saved(tmp_path, _clevr_ds(3, images=images))
    with pytest.raises(Q.DataError) as e:
        Q.load_counting_split(out, "clevr")
    msg = _one_line(e)
    assert str(out) in msg and "row 2" in msg and "image cannot be decoded" in msg
    # Without the up-front check the error comes when the row is read.
    lazy = Q.load_counting_split(out, "clevr", check_images=False)
    assert lazy[0].image.mode == "RGB"
    with pytest.raises(Q.DataError, match="row 2"):
        lazy[2]


def test_empty_split(tmp_path):
    out = _saved(tmp_path, _clevr_ds(0, solutions=[], images=[]))
    with pytest.raises(Q.DataError) as e:
        Q.load_counting_split(out, "clevr")
    assert "empty" in _one_line(e)


def test_dataset_dict_needs_a_split(tmp_path):
    out = _saved(tmp_path, DatasetDict({"train": _clevr_ds(2), "heldout": _clevr_ds(2)}))
    with pytest.raises(Q.DataError, match="heldout, train|train, heldout"):
        Q.load_counting_split(out, "clevr")
    with pytest.raises(Q.DataError, match="choose one"):
        Q.load_counting_split(out, "clevr", split="test")


def test_not_a_dataset_directory(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("hi")
    with pytest.raises(Q.DataError, match="not a saved dataset"):
        Q.load_counting_split(tmp_path / "junk", "superclevr")


def test_non_rgb_images_load_as_rgb(tmp_path):
    images = [{"bytes": _png(mode="RGBA"), "path": None}, {"bytes": _png(mode="L"), "path": None}]
    out = _saved(tmp_path, _clevr_ds(2, images=images))
    split = Q.load_counting_split(out, "clevr")
    assert [e.image.mode for e in split] == ["RGB", "RGB"]


# --------------------------------------------------------------------------- blog profile: CLEVR


def _write_clevr_parquet(path, solutions, hf_metadata: bool):
    """A shard like the hub's: image struct<bytes, path> (RGBA PNGs), problem, solution."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [{"bytes": _png((10 * i, 20, 30, 128)), "path": f"img_{i}.png"} for i in range(len(solutions))]
    if hf_metadata:
        ds = Dataset.from_dict(
            {"image": images, "problem": [Q.CLEVR_PROBLEM] * len(solutions), "solution": solutions},
            features=Q.CLEVR_FEATURES,
        )
        ds.to_parquet(str(path))
    else:
        table = pa.table(
            {
                "image": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                "problem": [Q.CLEVR_PROBLEM] * len(solutions),
                "solution": solutions,
            }
        )
        pq.write_table(table, path)


@pytest.mark.parametrize("hf_metadata", [True, False])
def test_fetch_clevr_blog_from_local_parquet(tmp_path, no_hub, hf_metadata):
    raw = tmp_path / "raw" / "clevr_cogen_a_train"
    sols = [Q.format_solution(k) for k in (3, 4, 5, 6, 7, 8, 9, 10)]
    _write_clevr_parquet(raw / "data" / "train-00000-of-00002.parquet", sols[:5], hf_metadata)
    _write_clevr_parquet(raw / "data" / "train-00001-of-00002.parquet", sols[5:], hf_metadata)
    dd = S.fetch_clevr_blog(raw, eval_rows=3, cache_dir=tmp_path / "cache")
    assert not no_hub  # the hub was never asked
    assert list(dd) == ["train", "heldout"]
    assert dd["train"]["solution"] == sols[:5]
    assert dd["heldout"]["solution"] == sols[5:]  # the LAST eval_rows rows are held out
    for split in dd.values():
        assert split.features == Q.CLEVR_FEATURES
        assert all(img.mode == "RGB" for img in split["image"])
    Q.save_dataset_atomic(dd, tmp_path / "datasets" / "clevr")
    held = Q.load_counting_split(tmp_path / "datasets" / "clevr" / "heldout", "clevr")
    assert held.answers == [8, 9, 10]


def test_fetch_clevr_blog_needs_rows_to_train_on(tmp_path, no_hub):
    raw = tmp_path / "raw"
    _write_clevr_parquet(raw / "train.parquet", [Q.format_solution(3)] * 4, hf_metadata=True)
    with pytest.raises(Q.DataError, match="eval_rows=4"):
        S.fetch_clevr_blog(raw, eval_rows=4, cache_dir=tmp_path / "cache")


def test_fetch_clevr_blog_offline_says_what_to_download_and_where(tmp_path, no_hub):
    raw = tmp_path / "raw" / "clevr_cogen_a_train"
    with pytest.raises(S.DataUnavailableError) as e:
        S.fetch_clevr_blog(raw, repo_id="leonardPKU/clevr_cogen_a_train", cache_dir=tmp_path / "cache")
    msg = _one_line(e)
    assert f"hf download leonardPKU/clevr_cogen_a_train --repo-type dataset --local-dir {raw}" in msg
    assert no_hub and no_hub[0][0][0] == "leonardPKU/clevr_cogen_a_train"
    assert isinstance(e.value, RuntimeError)


def test_fetch_clevr_blog_does_not_swallow_keyboard_interrupt(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "load_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        S.fetch_clevr_blog(tmp_path / "raw")


def test_fetch_clevr_blog_from_hub(tmp_path, monkeypatch):
    sols = [Q.format_solution(k) for k in range(3, 9)]
    hub = Dataset.from_dict(
        {
            "image": [{"bytes": _png(), "path": None} for _ in sols],
            "problem": [Q.CLEVR_PROBLEM] * len(sols),
            "solution": sols,
            "extra": list(range(len(sols))),
        },
        features=Features({**Q.CLEVR_FEATURES, "extra": Value("int64")}),
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, split, **kw: hub)
    dd = S.fetch_clevr_blog(tmp_path / "raw", eval_rows=2)
    assert dd["heldout"]["solution"] == sols[-2:]
    assert dd["train"].features == Q.CLEVR_FEATURES  # extra columns dropped
    assert dd["train"][0]["image"].mode == "RGB"


# --------------------------------------------------------------------------- blog profile: SuperCLEVR


def test_fetch_superclevr_blog_from_r1v_layout(tmp_path, no_hub):
    raw = tmp_path / "raw" / "superclevr"
    (raw / "images").mkdir(parents=True)
    (raw / "subsplit").mkdir()
    rows = []
    for i, gt in enumerate([3, 7, 10]):
        name = f"superCLEVR_new_{25000 + i:06d}.png"
        # One image sits at the jsonl's relative path, one in images/, one only findable by name.
        where = raw / "images" / name if i < 2 else raw / "subsplit" / name
        where.write_bytes(_png((0, 100 + i, 0, 200)))
        image_path = f"images/{name}" if i == 0 else f"./somewhere/else/{name}"
        rows.append(
            {
                "image_path": image_path,
                "question": "How many different items are there in the image?",
                "ground_truth": gt,
            }
        )
    (raw / S.SUPERCLEVR_JSONL).write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    ds = S.fetch_superclevr_blog(raw)
    assert not no_hub
    assert ds.features == Q.SUPERCLEVR_FEATURES
    assert ds["ground_truth"] == [3, 7, 10]
    assert ds["question"] == ["How many different items are there in the image?"] * 3
    assert [img.mode for img in ds["image"]] == ["RGB"] * 3
    assert ds[1]["image"].getpixel((0, 0)) == (0, 101, 0)
    Q.save_dataset_atomic(ds, tmp_path / "datasets" / "superclevr")
    assert Q.load_counting_split(tmp_path / "datasets" / "superclevr", "superclevr").answers == [3, 7, 10]


def test_fetch_superclevr_blog_missing_image_names_the_line(tmp_path, no_hub):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / S.SUPERCLEVR_JSONL).write_text(
        json.dumps({"image_path": "images/a.png", "question": "q", "ground_truth": 3})
    )
    with pytest.raises(Q.DataError, match="line 1: image images/a.png not found"):
        S.fetch_superclevr_blog(raw)


def test_fetch_superclevr_blog_offline_says_what_to_download_and_where(tmp_path, no_hub):
    raw = tmp_path / "raw" / "superclevr"
    with pytest.raises(S.DataUnavailableError) as e:
        S.fetch_superclevr_blog(raw, repo_id="tobiaslee/Super_clevr200")
    msg = _one_line(e)
    assert "put them in" in msg and str(raw) in msg and S.SUPERCLEVR_JSONL in msg and "images" in msg


def test_fetch_superclevr_blog_from_hub_normalises_types(tmp_path, monkeypatch):
    hub = DatasetDict(
        {
            "test": _superclevr_ds(3, ground_truth=["3", "4", "5"], gt_feature=Value("string")).cast_column(
                "image", ImageFeature()
            )
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, **kw: hub)
    ds = S.fetch_superclevr_blog(tmp_path / "raw")
    assert ds.features == Q.SUPERCLEVR_FEATURES and ds["ground_truth"] == [3, 4, 5]


def test_fetch_superclevr_blog_hub_copy_without_labels_is_unavailable(tmp_path, monkeypatch):
    images_only = DatasetDict(
        {
            "train": Dataset.from_dict(
                {"image": [{"bytes": _png(), "path": None}]}, features=Features({"image": ImageFeature()})
            )
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, **kw: images_only)
    with pytest.raises(S.DataUnavailableError, match="put them in"):
        S.fetch_superclevr_blog(tmp_path / "raw", repo_id="tobiaslee/Super_clevr200")
