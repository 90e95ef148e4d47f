"""Datasets of counting questions: building (mini profile), fetching (blog profile),
saving, and the one loader every downstream stage uses.

Both profiles produce the real schemas, so nothing downstream can tell them apart:

- CLEVR (`leonardPKU/clevr_cogen_a_train`): `image` (datasets `Image()`), `problem`
  (always "How many items are there in the image?"), `solution` ("<answer> N </answer>").
  Splits `train` and `heldout`.
- SuperCLEVR (R1-V's 200 counting questions): `image`, `question` (str),
  `ground_truth` (int).

Everything here takes plain arguments (no config objects); stage `main()`s do the
wiring. Errors about data a user supplied are `DataError` (a ValueError) with a
one-line message that names the path and row; a blog-profile dataset that cannot
be obtained offline is `DataUnavailableError` saying what to download and where.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import datasets
import numpy as np
from datasets import Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image
from tqdm import tqdm

from stages.scenes.clevr import render_clevr_scene
from stages.scenes.superclevr import render_superclevr_scene

CLEVR_PROBLEM = "How many items are there in the image?"
# The real benchmark's phrasing first; the rest exercise "varied question phrasings".
SUPERCLEVR_QUESTIONS: tuple[str, ...] = (
    "How many different items are there in the image?",
    "How many objects are in this picture?",
    "Count the vehicles in the image.",
    "What is the number of things in the scene?",
    "How many vehicles can you see?",
    "How many objects are there in total?",
    "Count all the objects in this picture.",
    "What is the total number of items shown?",
)

CLEVR_FEATURES = Features({"image": ImageFeature(), "problem": Value("string"), "solution": Value("string")})
SUPERCLEVR_FEATURES = Features({"image": ImageFeature(), "question": Value("string"), "ground_truth": Value("int64")})
REQUIRED_COLUMNS = {"clevr": ("image", "problem", "solution"), "superclevr": ("image", "question", "ground_truth")}

CLEVR_REPO = "leonardPKU/clevr_cogen_a_train"
# The hub copy whose layout is image/question/ground_truth (a parquet `test` split).
# `tobiaslee/Super_clevr200` (what R1-V links) holds only a tarball of images.
SUPERCLEVR_REPO = "jigsaw-r1/super_clevr"
SUPERCLEVR_JSONL = "superclevr_test200_counting_problems.jsonl"

PROGRESS_MIN_ROWS = 500  # show a tqdm bar when rendering at least this many images

Kind = Literal["clevr", "superclevr"]


class DataError(ValueError):
    """A dataset on disk is missing, malformed or corrupt (one-line message)."""


class DataUnavailableError(RuntimeError):
    """A blog-profile dataset is neither on disk nor downloadable (one-line message)."""


# --------------------------------------------------------------------------- answers


_SOLUTION_RE = re.compile(r"^\s*<answer>\s*(.*?)\s*</answer>\s*$", re.DOTALL)


def format_solution(count: int) -> str:
    """The CLEVR dataset's answer string: "<answer> 3 </answer>"."""
    return f"<answer> {int(count)} </answer>"


def parse_solution(solution: str) -> int:
    """Parse "<answer> N </answer>" into N; DataError unless N is an integer."""
    m = _SOLUTION_RE.match(solution) if isinstance(solution, str) else None
    if m is None:
        raise DataError(f"solution {_short(solution)} is not of the form '<answer> N </answer>'")
    body = m.group(1)
    if not re.fullmatch(r"[+-]?\d+", body):
        raise DataError(f"solution {_short(solution)} does not hold an integer answer")
    return int(body)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- images


def png_bytes(image: Image.Image) -> bytes:
    """Encode an image as PNG (deterministic for identical pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _rgb_bytes(data: bytes) -> bytes:
    """The same bytes if they already decode to an RGB image, else an RGB PNG.

    `Image.open` only parses the header, so RGB rows cost almost nothing.
    """
    with Image.open(io.BytesIO(data)) as im:
        if im.mode == "RGB":
            return data
        return png_bytes(im.convert("RGB"))


def _decode_image(cell: dict | None, base_dir: Path | None = None) -> Image.Image:
    """Decode an undecoded datasets Image cell ({"bytes", "path"}) into an RGB image."""
    if cell is None:
        raise ValueError("image is missing (null)")
    data = cell.get("bytes")
    if data is None:
        p = cell.get("path")
        if not p:
            raise ValueError("image has neither bytes nor a path")
        p = Path(p)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        data = p.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB")


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


# --------------------------------------------------------------------------- saving


def save_dataset_atomic(ds: Dataset | DatasetDict, out_dir: Path) -> None:
    """`save_to_disk` into a temporary directory beside `out_dir`, then rename it into
    place. An existing `out_dir` is removed only once the new copy is complete, so
    `out_dir` is never half-written."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        ds.save_to_disk(str(tmp))
        if out_dir.exists() or out_dir.is_symlink():
            if out_dir.is_dir() and not out_dir.is_symlink():
                os.replace(out_dir, old)
            else:
                out_dir.unlink()
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- blog profile


def _local_parquet_files(raw_dir: Path) -> list[Path]:
    """Parquet files under raw_dir (e.g. a `huggingface-cli download --local-dir`
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
        f"download its parquet files on a machine with network and put them in {raw_dir}/ "
        "(see README, 'Blog profile')"
    )


def fetch_clevr_blog(
    raw_dir: Path, repo_id: str = CLEVR_REPO, eval_rows: int = 15000, cache_dir: Path | None = None
) -> DatasetDict:
    """The blog's CLEVR counting data as DatasetDict(train, heldout).

    Source: a local copy of the hub dataset's parquet files anywhere under
    `raw_dir` (e.g. `huggingface-cli download leonardPKU/clevr_cogen_a_train
    --repo-type dataset --local-dir <raw_dir>`), else `datasets.load_dataset(repo_id,
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


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class CountingExample:
    image: Image.Image  # RGB
    question: str
    answer: int
    row: int  # index of the row in its split


class CountingSplit(Sequence[CountingExample]):
    """A validated split, read lazily: questions and answers are in memory, each
    image is decoded (to RGB) when its example is indexed. Slicing returns a list."""

    def __init__(self, path: Path, kind: Kind, ds: Dataset, questions: list[str], answers: list[int]):
        self.path = path
        self.kind = kind
        self._ds = ds  # image column with decode=False
        self.questions = questions
        self.answers = answers

    def __len__(self) -> int:
        return len(self.answers)

    @overload
    def __getitem__(self, i: int) -> CountingExample: ...
    @overload
    def __getitem__(self, i: slice) -> list[CountingExample]: ...
    def __getitem__(self, i: int | slice) -> CountingExample | list[CountingExample]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows of {self.path}")
        i = i % n
        try:
            image = _decode_image(self._ds[i]["image"], self.path)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{self.path}: row {i}: image cannot be decoded ({_one_line(exc)})") from exc
        return CountingExample(image=image, question=self.questions[i], answer=self.answers[i], row=i)

    def __iter__(self) -> Iterator[CountingExample]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"CountingSplit({str(self.path)!r}, kind={self.kind!r}, rows={len(self)})"


def load_counting_split(path: Path, kind: Kind, split: str | None = None, check_images: bool = True) -> CountingSplit:
    """Load and validate a `save_to_disk` directory of counting questions.

    `path` is a saved Dataset (e.g. data/clevr/train, data/superclevr) or a saved
    DatasetDict together with `split` (a DatasetDict with one split needs none).
    Checks: the directory exists, required columns are present, the split is not
    empty, every CLEVR `solution` parses as "<answer> N </answer>", every SuperCLEVR
    `ground_truth` is an int, and (check_images) every image decodes. Any failure
    raises DataError with a one-line message naming the path (and row).
    """
    if kind not in REQUIRED_COLUMNS:
        raise ValueError(f"kind must be 'clevr' or 'superclevr', got {kind!r}")
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"dataset directory {path} does not exist: run `dvc repro fetch_data` first")
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path} is not a saved dataset ({_one_line(exc)}): run `dvc repro fetch_data`") from exc
    if isinstance(loaded, DatasetDict):
        names = list(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            raise DataError(f"{path} holds splits {', '.join(names)}: choose one (split={split!r})")
        ds, path = loaded[split], path / split
    else:
        ds = loaded
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} for a {kind} split (columns: {', '.join(ds.column_names)})"
        )
    if len(ds) == 0:
        raise DataError(f"{path}: the split is empty (0 rows): run `dvc repro fetch_data`")
    if not isinstance(ds.features["image"], ImageFeature):
        raise DataError(f"{path}: column 'image' is not an image column ({ds.features['image']})")
    ds = ds.cast_column("image", ImageFeature(decode=False))

    if kind == "clevr":
        questions = list(ds["problem"])
        answers = []
        for i, sol in enumerate(ds["solution"]):
            try:
                answers.append(parse_solution(sol))
            except DataError as exc:
                raise DataError(f"{path}: row {i}: {exc}") from None
    else:
        questions = list(ds["question"])
        answers = []
        for i, gt in enumerate(ds["ground_truth"]):
            if isinstance(gt, bool) or not isinstance(gt, int):
                raise DataError(f"{path}: row {i}: ground_truth {_short(gt)} is not an int")
            answers.append(gt)
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{path}: row {i}: the question is empty or not a string ({_short(q)})")

    if check_images:
        row = 0
        for batch in ds.select_columns(["image"]).iter(batch_size=256):
            for cell in batch["image"]:
                try:
                    _decode_image(cell, path)
                except Exception as exc:  # noqa: BLE001
                    raise DataError(f"{path}: row {row}: image cannot be decoded ({_one_line(exc)})") from exc
                row += 1
    return CountingSplit(path, kind, ds, questions, answers)
