"""Counting questions on disk: the real schemas, the one loader every downstream stage uses, and saving.

Both profiles produce the real schemas, so nothing downstream can tell them apart:

- CLEVR (`leonardPKU/clevr_cogen_a_train`): `image` (datasets `Image()`), `problem`
  (always "How many items are there in the image?"), `solution` ("<answer> N </answer>").
  Splits `train` and `heldout`.
- SuperCLEVR (R1-V's 200 counting questions): `image`, `question` (str),
  `ground_truth` (int).

Errors about data a user supplied are `DataError` (a ValueError) with a one-line message that names the
path and row. Building and fetching the datasets is :mod:`stages.counting.sources` (stage fetch_data only).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import datasets
from datasets import Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

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

Kind = Literal["clevr", "superclevr"]


class DataError(ValueError):
    """A dataset on disk is missing, malformed or corrupt (one-line message)."""



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
