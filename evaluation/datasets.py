"""Evaluation data on disk: a folder per class, or a JSONL file of image-text pairs.

Class folders are matched to a label set by name. Names are compared after folding case and treating
spaces, underscores and hyphens alike ("Smooth_Muscle" is "smooth muscle"), and a preset may name the
folders of its dataset (Kather's ADI, BACK, ... -> its descriptive labels). Anything that does not
pair up one-to-one is a single error that lists both sides, so a typo never silently drops a class.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plipbot.errors import InputFileError, LabelSetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})


def normalise_name(name: str) -> str:
    """Case-, space-, underscore- and hyphen-insensitive form of a class or label name."""
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


@dataclass(frozen=True)
class LabelledImages:
    """Images under `root`, one sub-folder per class; classes and files in sorted order."""

    root: Path
    classes: tuple[str, ...]  # folder names
    paths: tuple[Path, ...]
    targets: np.ndarray  # index into `classes`, one per path

    def __len__(self) -> int:
        return len(self.paths)


def scan_class_folders(root: Path) -> LabelledImages:
    """Every image file under each immediate sub-folder of `root` (nested folders included)."""
    if not root.is_dir():
        raise InputFileError(f"{root}: no such folder (expected one sub-folder per class).")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputFileError(f"{root} has no class sub-folders (expected one sub-folder per class).")
    paths: list[Path] = []
    targets: list[int] = []
    empty = []
    for index, folder in enumerate(folders):
        files = _image_files(folder)
        if not files:
            empty.append(folder.name)
        paths.extend(files)
        targets.extend([index] * len(files))
    if empty:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputFileError(f"{root}: no images ({suffixes}) in class folder(s): {', '.join(empty)}.")
    return LabelledImages(
        root=root,
        classes=tuple(f.name for f in folders),
        paths=tuple(paths),
        targets=np.asarray(targets, dtype=np.int64),
    )


def match_classes(
    classes: Sequence[str], labels: Sequence[str], folder_names: Mapping[str, str] | None = None
) -> np.ndarray:
    """For each class folder, the index of its label; a one-to-one match or a LabelSetError.

    `folder_names` maps folder names to label texts (a preset's dataset layout); a folder matches a
    label when either its own name or its mapped name equals the label, both normalised.
    """
    by_label = {normalise_name(label): i for i, label in enumerate(labels)}
    aliases = {normalise_name(k): normalise_name(v) for k, v in (folder_names or {}).items()}
    matched: list[int | None] = []
    for folder in classes:
        key = normalise_name(folder)
        index = by_label.get(key)
        if index is None and key in aliases:
            index = by_label.get(aliases[key])
        matched.append(index)
    used = [i for i in matched if i is not None]
    duplicates = sorted({labels[i] for i in used if used.count(i) > 1})
    unmatched_folders = [f for f, i in zip(classes, matched, strict=True) if i is None]
    unmatched_labels = [label for i, label in enumerate(labels) if i not in used]
    if unmatched_folders or unmatched_labels or duplicates:
        problems = []
        if unmatched_folders:
            problems.append(f"folders without a label: {', '.join(unmatched_folders)}")
        if unmatched_labels:
            problems.append(f"labels without a folder: {', '.join(unmatched_labels)}")
        if duplicates:
            problems.append(f"labels matched by several folders: {', '.join(duplicates)}")
        raise LabelSetError(
            f"Class folders and labels do not match ({'; '.join(problems)}). "
            f"Folders: {', '.join(classes)}. Labels: {', '.join(labels)}."
        )
    return np.asarray(matched, dtype=np.int64)


def match_folder_classes(train: Sequence[str], test: Sequence[str]) -> np.ndarray:
    """For each test class folder, the index of the train folder with the same (normalised) name."""
    return match_classes(test, train)


@dataclass(frozen=True)
class ImageTextPair:
    """One line of a retrieval file: an image path (absolute, or relative to the file) and its text."""

    image: Path
    text: str


def load_pairs(path: Path) -> list[ImageTextPair]:
    """Read `{"image": ..., "text": ...}` lines; blank lines are skipped, other malformed lines are errors."""
    if not path.is_file():
        raise InputFileError(f"{path}: no such file.")
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(f"Cannot read {path}: {err}.") from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputFileError(f"{path}:{number}: not JSON ({err.msg}).") from err
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("image"), str)
            or not isinstance(record.get("text"), str)
        ):
            raise InputFileError(f'{path}:{number}: expected {{"image": "<path>", "text": "<caption>"}}.')
        image = Path(record["image"])
        pairs.append(ImageTextPair(image if image.is_absolute() else path.parent / image, record["text"]))
    if not pairs:
        raise InputFileError(f"{path} holds no image-text pairs.")
    return pairs
