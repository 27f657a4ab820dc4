"""Labelled folders and image-text pairs: name matching, the Kather layout, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.datasets import load_pairs, match_classes, normalise_name, scan_class_folders
from model.presets import get_preset, preset_folder_names
from plipbot.errors import InputFileError, LabelSetError
from tests.imagegen import encode, solid


def _folder(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i}.png").write_bytes(encode(solid((10 * i, 50, 90), size=(8, 8))))
    return root


def test_scan_sorts_classes_and_files_and_skips_non_images(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", {"b": 2, "a": 3})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".hidden.png").write_bytes(b"x")
    (root / "README.md").write_text("top-level files are ignored")
    data = scan_class_folders(root)
    assert data.classes == ("a", "b")
    assert len(data) == 5 and data.targets.tolist() == [0, 0, 0, 1, 1]
    assert [p.name for p in data.paths[:3]] == ["0.png", "1.png", "2.png"]


def test_scan_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such folder"):
        scan_class_folders(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(InputFileError, match="no class sub-folders"):
        scan_class_folders(tmp_path / "flat")
    root = _folder(tmp_path / "ds", {"full": 1})
    (root / "empty").mkdir()
    with pytest.raises(InputFileError, match="empty"):
        scan_class_folders(root)


def test_names_match_across_case_spaces_underscores_and_hyphens() -> None:
    assert normalise_name("  Smooth_Muscle ") == normalise_name("smooth muscle") == "smooth muscle"
    assert normalise_name("cancer-associated  stroma") == "cancer associated stroma"
    order = match_classes(["Tumor", "normal_TISSUE"], ["normal tissue", "tumor"])
    assert order.tolist() == [1, 0]


def test_kather_folder_names_map_to_the_papers_labels() -> None:
    kather = get_preset("kather")
    folders = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
    order = match_classes(folders, kather.texts, preset_folder_names("kather"))
    assert [kather.texts[i] for i in order] == [
        "adipose tissue",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ]
    # Folders named by the descriptive labels themselves work too.
    reverse = match_classes(list(reversed(kather.texts)), kather.texts, preset_folder_names("kather"))
    assert reverse.tolist() == list(range(8, -1, -1))


def test_mismatch_is_one_error_listing_both_sides() -> None:
    with pytest.raises(LabelSetError) as caught:
        match_classes(["tumor", "stroma", "fat"], ["tumor", "stroma", "adipose tissue", "mucus"])
    message = caught.value.user_message
    assert "\n" not in message
    assert "folders without a label: fat" in message
    assert "labels without a folder: adipose tissue, mucus" in message
    assert "Folders: tumor, stroma, fat." in message


def test_two_folders_for_one_label_are_refused() -> None:
    with pytest.raises(LabelSetError, match="matched by several folders: tumor"):
        match_classes(["Tumor", "tumor_"], ["tumor", "normal"])


def test_pairs_resolve_relative_images_and_refuse_malformed_lines(tmp_path: Path) -> None:
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text('{"image": "a.png", "text": "one"}\n\n{"image": "/abs/b.png", "text": "two"}\n')
    pairs = load_pairs(pairs_file)
    assert [(p.image, p.text) for p in pairs] == [(tmp_path / "a.png", "one"), (Path("/abs/b.png"), "two")]
    pairs_file.write_text('{"image": "a.png", "text": "one"}\n{"image": "b.png"}\n')
    with pytest.raises(InputFileError, match=r"pairs.jsonl:2: expected"):
        load_pairs(pairs_file)
    pairs_file.write_text("not json\n")
    with pytest.raises(InputFileError, match=r"pairs.jsonl:1: not JSON"):
        load_pairs(pairs_file)
    pairs_file.write_text("\n")
    with pytest.raises(InputFileError, match="no image-text pairs"):
        load_pairs(pairs_file)
