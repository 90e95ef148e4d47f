"""Where the counting datasets come from (stage fetch_data): rendered offline (mini profile) or fetched from
local copies or the hub (blog profile), always in the schemas of :mod:`stages.counting.questions`.

Everything here takes plain arguments (no config objects); the stage's `main()` does the wiring. A
blog-profile dataset that cannot be obtained offline is `DataUnavailableError` saying what to download and
where.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets import Dataset, DatasetDict
from datasets import Image as ImageFeature
from PIL import Image
from tqdm import tqdm

from stages.counting.questions import (
    CLEVR_FEATURES,
    CLEVR_PROBLEM,
    REQUIRED_COLUMNS,
    SUPERCLEVR_FEATURES,
    SUPERCLEVR_QUESTIONS,
    DataError,
    _one_line,
    _rgb_bytes,
    _short,
    format_solution,
    png_bytes,
)
from stages.scenes.clevr import render_clevr_scene
from stages.scenes.superclevr import render_superclevr_scene

CLEVR_REPO = "leonardPKU/clevr_cogen_a_train"
# The hub copy whose layout is image/question/ground_truth (a parquet `test` split).
# `tobiaslee/Super_clevr200` (what R1-V links) holds only a tarball of images.
SUPERCLEVR_REPO = "jigsaw-r1/super_clevr"
SUPERCLEVR_JSONL = "superclevr_test200_counting_problems.jsonl"

PROGRESS_MIN_ROWS = 500  # show a tqdm bar when rendering at least this many images


class DataUnavailableError(RuntimeError):
    """A blog-profile dataset is neither on disk nor downloadable (one-line message)."""



# --------------------------------------------------------------------------- mini profile


@dataclass(frozen=True)
class RenderedExample:
    """One rendered scene before it becomes a dataset row."""

    png: bytes
    count: int
    objects: list[dict]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


def clevr_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent RNG streams of CLEVR-mini's train and held-out splits."""
    return np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])


def superclevr_stream(seed: int) -> np.random.Generator:
    """RNG stream of SuperCLEVR-mini (independent of both CLEVR-mini streams)."""
    return np.random.default_rng([seed, 2])


def render_examples(
    render: Callable[[np.random.Generator, int, int], tuple[Image.Image, list[dict]]],
    rng: np.random.Generator,
    n: int,
    min_count: int,
    max_count: int,
    size: int,
    exclude: frozenset[str] | set[str] = frozenset(),
    desc: str = "render",
) -> list[RenderedExample]:
    """Render `n` scenes with counts uniform in [min_count, max_count].

    A scene whose PNG hash is in `exclude` is thrown away and drawn again from the
    same stream, so no returned image is byte-identical to an excluded one.
    """
    if not 0 <= min_count <= max_count:
        raise ValueError(f"need 0 <= min_count <= max_count, got {min_count}..{max_count}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out: list[RenderedExample] = []
    with tqdm(total=n, desc=desc, unit="img", disable=n < PROGRESS_MIN_ROWS) as bar:
        while len(out) < n:
            count = int(rng.integers(min_count, max_count + 1))
            image, objects = render(rng, count, size)
            ex = RenderedExample(png_bytes(image), count, objects)
            if exclude and ex.sha256 in exclude:
                continue
            out.append(ex)
            bar.update(1)
    return out


def clevr_rows(examples: Sequence[RenderedExample]) -> Dataset:
    return Dataset.from_dict(
        {
            "image": [{"bytes": e.png, "path": None} for e in examples],
            "problem": [CLEVR_PROBLEM] * len(examples),
            "solution": [format_solution(e.count) for e in examples],
        },
        features=CLEVR_FEATURES,
    )


def build_clevr_mini(
    seed: int, n_train: int, n_heldout: int, min_count: int, max_count: int, size: int = 112
) -> DatasetDict:
    """CLEVR-mini with splits `train` and `heldout` in the real CLEVR schema.

    The splits use separate RNG streams (`clevr_streams(seed)`), and any held-out
    image byte-identical to a training image is re-drawn, so the splits are disjoint.
    `solution` is the number of objects drawn.
    """
    rng_train, rng_heldout = clevr_streams(seed)
    train = render_examples(render_clevr_scene, rng_train, n_train, min_count, max_count, size, desc="clevr-mini train")
    seen = {e.sha256 for e in train}
    heldout = render_examples(
        render_clevr_scene, rng_heldout, n_heldout, min_count, max_count, size, exclude=seen, desc="clevr-mini heldout"
    )
    return DatasetDict({"train": clevr_rows(train), "heldout": clevr_rows(heldout)})


def superclevr_questions(n: int) -> list[str]:
    """The question of each row: SUPERCLEVR_QUESTIONS cycled (deterministic; every
    phrasing appears once n >= len(SUPERCLEVR_QUESTIONS))."""
    return [SUPERCLEVR_QUESTIONS[i % len(SUPERCLEVR_QUESTIONS)] for i in range(n)]


def build_superclevr_mini(seed: int, n: int = 200, min_count: int = 3, max_count: int = 10, size: int = 112) -> Dataset:
    """SuperCLEVR-mini: `n` vehicle scenes in the schema image/question/ground_truth.

    Defaults follow the real benchmark (200 questions, counts 3..10).
    """
    examples = render_examples(
        render_superclevr_scene, superclevr_stream(seed), n, min_count, max_count, size, desc="superclevr-mini"
    )
    return Dataset.from_dict(
        {
            "image": [{"bytes": e.png, "path": None} for e in examples],
            "question": superclevr_questions(n),
            "ground_truth": [e.count for e in examples],
        },
        features=SUPERCLEVR_FEATURES,
    )


# --------------------------------------------------------------------------- blog profile


def _local_parquet_files(raw_dir: Path) -> list[Path]:
    """Parquet files under raw_dir (e.g. a `hf download --repo-type dataset --local-dir`
    copy: raw_dir/data/train-*.parquet), in path order, skipping hidden folders."""
    if not raw_dir.is_dir():
        return []
    files = [
        p for p in raw_dir.rglob("*.parquet") if not any(part.startswith(".") for part in p.relative_to(raw_dir).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(raw_dir).as_posix())


def _load_parquet(files: list[Path], cache_dir: Path | None) -> Dataset:
    try:
        return Dataset.from_parquet([str(f) for f in files], cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:  # noqa: BLE001 - reported as one line naming the files
        raise DataError(f"cannot read the parquet files in {files[0].parent} ({_one_line(exc)})") from exc


def _ensure_image_column(ds: Dataset, where: str) -> Dataset:
    if "image" not in ds.column_names:
        raise DataError(f"{where} has no 'image' column (columns: {', '.join(ds.column_names)})")
    try:  # an Image feature, or plain parquet without HF metadata: struct<bytes, path>
        return ds.cast_column("image", ImageFeature(decode=False))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{where}: column 'image' is not an image column ({_one_line(exc)})") from exc


def _images_to_rgb(ds: Dataset, where: str) -> Dataset:
    """Re-encode every non-RGB image (the hub's PNGs may be RGBA) as an RGB PNG."""
    ds = _ensure_image_column(ds, where)

    def convert(batch: dict) -> dict:
        out = []
        for cell in batch["image"]:
            if cell is None or cell.get("bytes") is None:
                out.append(cell)
                continue
            try:
                out.append({"bytes": _rgb_bytes(cell["bytes"]), "path": None})
            except Exception:  # noqa: BLE001 - left for load_counting_split to report by row
                out.append(cell)
        return {"image": out}

    ds = ds.map(convert, batched=True, batch_size=256, features=ds.features, desc="images to RGB")
    return ds.cast_column("image", ImageFeature())


def _clevr_unavailable(repo_id: str, raw_dir: Path, exc: BaseException) -> DataUnavailableError:
    return DataUnavailableError(
        f"cannot reach the Hugging Face hub to download {repo_id} ({_one_line(exc, 120)}): "
        f"on a machine with network run `hf download {repo_id} --repo-type dataset --local-dir {raw_dir}` "
        "(see README, 'Blog profile')"
    )


def fetch_clevr_blog(
    raw_dir: Path, repo_id: str = CLEVR_REPO, eval_rows: int = 15000, cache_dir: Path | None = None
) -> DatasetDict:
    """The blog's CLEVR counting data as DatasetDict(train, heldout).

    Source: a local copy of the hub dataset's parquet files anywhere under
    `raw_dir` (e.g. `hf download leonardPKU/clevr_cogen_a_train --repo-type dataset
    --local-dir <raw_dir>`), else `datasets.load_dataset(repo_id,
    split="train")`. Images are converted to RGB.

    Split choice: the LAST `eval_rows` rows (in the dataset's own order) are the
    held-out split and all the rows before them are the training split, following
    the blog ("15,000 samples reserved for evaluation, remaining samples for
    training"); the blog does not say which rows, so we take the tail.
    """
    raw_dir = Path(raw_dir)
    files = _local_parquet_files(raw_dir)
    if files:
        ds = _load_parquet(files, cache_dir)
        where = str(raw_dir)
    else:
        try:
            ds = datasets.load_dataset(repo_id, split="train", cache_dir=str(cache_dir) if cache_dir else None)
        except Exception as exc:  # noqa: BLE001 - any hub failure means "not available"
            raise _clevr_unavailable(repo_id, raw_dir, exc) from exc
        where = f"hub dataset {repo_id}"
    missing = [c for c in REQUIRED_COLUMNS["clevr"] if c not in ds.column_names]
    if missing:
        raise DataError(f"{where} lacks column(s) {', '.join(missing)} (columns: {', '.join(ds.column_names)})")
    ds = ds.select_columns(list(REQUIRED_COLUMNS["clevr"]))
    ds = _images_to_rgb(ds, where)
    if not 0 < eval_rows < len(ds):
        raise DataError(f"{where} has {len(ds)} rows: cannot hold out eval_rows={eval_rows} and still train")
    n_train = len(ds) - eval_rows
    return DatasetDict({"train": ds.select(range(n_train)), "heldout": ds.select(range(n_train, len(ds)))})


def _superclevr_unavailable(repo_id: str, raw_dir: Path, exc: BaseException) -> DataUnavailableError:
    return DataUnavailableError(
        f"cannot get the SuperCLEVR counting set from the Hugging Face hub ({repo_id}; {_one_line(exc, 120)}): "
        f"download R1-V's {SUPERCLEVR_JSONL} and the images of tobiaslee/Super_clevr200 (subsplit.tgz, unpacked) "
        f"and put them in {raw_dir}/ (the jsonl) and {raw_dir}/images/ (the PNGs) (see README, 'Blog profile')"
    )


def _find_jsonl(raw_dir: Path) -> Path | None:
    exact = raw_dir / SUPERCLEVR_JSONL
    if exact.is_file():
        return exact
    found = sorted(raw_dir.glob("*.jsonl")) if raw_dir.is_dir() else []
    return found[0] if len(found) == 1 else None


def _superclevr_from_jsonl(jsonl: Path, raw_dir: Path) -> Dataset:
    """R1-V's layout: one {"image_path", "question", "ground_truth"} per line; the
    image is found at image_path (absolute, or relative to raw_dir), else by file
    name anywhere under raw_dir (e.g. raw_dir/images/ or an unpacked tarball)."""
    by_name: dict[str, Path] | None = None
    images, questions, answers = [], [], []
    with jsonl.open(encoding="utf-8") as fh:
        lines = [(i, line) for i, line in enumerate(fh, start=1) if line.strip()]
    for lineno, line in lines:
        try:
            rec = json.loads(line)
            image_path, question, gt = rec["image_path"], rec["question"], rec["ground_truth"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(
                f"{jsonl}: line {lineno}: not a record with image_path/question/ground_truth ({_one_line(exc)})"
            ) from exc
        gt_int = _as_int(gt)
        if gt_int is None:
            raise DataError(f"{jsonl}: line {lineno}: ground_truth {_short(gt)} is not an integer")
        p = Path(image_path)
        candidates = [p] if p.is_absolute() else [raw_dir / p, raw_dir / "images" / p.name, raw_dir / p.name]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            if by_name is None:
                by_name = {}
                for f in sorted(raw_dir.rglob("*")):
                    if f.is_file() and f.suffix.lower() in {".png", ".jpg", ".jpeg"}:
                        by_name.setdefault(f.name, f)
            hit = by_name.get(p.name)
        if hit is None:
            raise DataError(
                f"{jsonl}: line {lineno}: image {image_path} not found under {raw_dir} (expected in {raw_dir}/images/)"
            )
        images.append({"bytes": _rgb_bytes(hit.read_bytes()), "path": None})
        questions.append(str(question))
        answers.append(gt_int)
    if not images:
        raise DataError(f"{jsonl} holds no questions")
    return Dataset.from_dict(
        {"image": images, "question": questions, "ground_truth": answers}, features=SUPERCLEVR_FEATURES
    )


def _as_int(value: object) -> int | None:
    """An int from an int or an integer string ("3"); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def _normalise_superclevr(ds: Dataset, where: str) -> Dataset:
    missing = [c for c in REQUIRED_COLUMNS["superclevr"] if c not in ds.column_names]
    if missing:
        raise DataError(f"{where} lacks column(s) {', '.join(missing)} (columns: {', '.join(ds.column_names)})")
    ds = ds.select_columns(list(REQUIRED_COLUMNS["superclevr"]))
    answers = []
    for i, v in enumerate(ds["ground_truth"]):
        a = _as_int(v)
        if a is None:
            raise DataError(f"{where}: row {i}: ground_truth {_short(v)} is not an integer")
        answers.append(a)
    ds = ds.remove_columns("ground_truth").add_column("ground_truth", answers)
    ds = _images_to_rgb(ds, where)
    return ds.cast(SUPERCLEVR_FEATURES)


# R1-V's SuperCLEVR counting set (Deep-Agent/R1-V, src/eval/prompts/superclevr_test200_counting_problems.jsonl):
# 200 questions, one phrasing, images superCLEVR_new_025000 ... 025199; their ground truths in the file's order,
# one character each (X = 10): 3-10, {3: 30, 4: 18, 5: 30, 6: 27, 7: 18, 8: 24, 9: 25, 10: 28}
R1V_SUPERCLEVR_QUESTION = "How many different items are there in the image?"
R1V_SUPERCLEVR_ANSWERS = tuple(10 if c == "X" else int(c) for c in (
    "49X433349X77765X4568X344557449863X9936653X6365755X63797698XX888X34673X96X593555955X488X934976X6687XX573697"
    "883789966979596XX6883764583588653439X56X568898X35X3645935X97873X874X9496X633855345535839X56343"))


def r1v_superclevr_differences(questions: Sequence[str], answers: Sequence[int]) -> list[str]:
    """How a counting set differs from R1-V's 200 SuperCLEVR questions ([] when it is that set, in its order)."""
    found, expected = [], R1V_SUPERCLEVR_ANSWERS
    if len(answers) != len(expected):
        found.append(f"{len(answers)} rows, not {len(expected)}")
    other = sorted({q for q in questions if q != R1V_SUPERCLEVR_QUESTION})
    if other:
        found.append(f"{len(other)} other question(s), e.g. {other[0]!r} (R1-V asks {R1V_SUPERCLEVR_QUESTION!r})")
    outside = sorted({int(a) for a in answers if not 3 <= a <= 10})
    if outside:
        found.append(f"ground truths outside R1-V's 3-10: {outside}")
    if len(answers) == len(expected) and not outside and tuple(int(a) for a in answers) != expected:
        if sorted(answers) == sorted(expected):
            found.append("R1-V's ground truths in another order (the probe and per-question answers follow it)")
        else:
            row = next(i for i, (a, b) in enumerate(zip(answers, expected, strict=True)) if a != b)
            found.append(f"other ground truths (first at row {row}: {answers[row]}, R1-V's is {expected[row]})")
    return found


def verify_r1v_superclevr(ds: Dataset, where: str) -> None:
    """Stop with one line unless ``ds`` is R1-V's 200 SuperCLEVR counting questions, in their order."""
    found = r1v_superclevr_differences(ds["question"], ds["ground_truth"])
    if found:
        raise DataError(f"{where} is not R1-V's SuperCLEVR-200 counting set: {'; '.join(found)}; put R1-V's "
                        f"{SUPERCLEVR_JSONL} and its images there (see README, 'The blog profile')")


def fetch_superclevr_blog(raw_dir: Path, repo_id: str = SUPERCLEVR_REPO, cache_dir: Path | None = None) -> Dataset:
    """The 200 SuperCLEVR counting questions as a Dataset(image, question, ground_truth).

    Sources, in order: R1-V's layout under `raw_dir` (`superclevr_test200_counting_problems.jsonl`
    + images in `raw_dir/images/` or at the jsonl's paths relative to raw_dir); parquet
    files under `raw_dir` with columns image/question/ground_truth; the hub copy
    `repo_id` (its only split, or `test`). Images are converted to RGB.
    """
    raw_dir = Path(raw_dir)
    jsonl = _find_jsonl(raw_dir)
    if jsonl is not None:
        return _superclevr_from_jsonl(jsonl, raw_dir)
    files = _local_parquet_files(raw_dir)
    if files:
        return _normalise_superclevr(_load_parquet(files, cache_dir), str(raw_dir))
    try:
        loaded = datasets.load_dataset(repo_id, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:  # noqa: BLE001 - any hub failure means "not available"
        raise _superclevr_unavailable(repo_id, raw_dir, exc) from exc
    if isinstance(loaded, DatasetDict):
        names = list(loaded)
        split = "test" if "test" in names else names[0] if len(names) == 1 else None
        if split is None:
            raise DataError(f"hub dataset {repo_id} has splits {', '.join(names)}; expected one split or 'test'")
        loaded = loaded[split]
    try:
        return _normalise_superclevr(loaded, f"hub dataset {repo_id}")
    except DataError as exc:
        raise _superclevr_unavailable(repo_id, raw_dir, exc) from exc


