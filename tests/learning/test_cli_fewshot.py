"""`plipbot eval fewshot` on generated folders with a tiny random checkpoint (NOT PLIP): classes separate
in image space, but a random model's label embeddings mean nothing, so zero-shot is near chance and a
few confirmed examples per label must lift weighted F1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from plipbot.cli import main
from tests.learning.folders import CLASS_COLOURS, write_split

LABELS = list(CLASS_COLOURS)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fewshot")
    return write_split(root / "train", 8, seed=1), write_split(root / "test", 6, seed=2)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract_and_eight_shots_beat_zero_shot(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, folders: tuple[Path, Path]
) -> None:
    train, test = folders
    code, out, err = run(
        capsys,
        *("eval", "fewshot", "--model", str(tiny_checkpoint), "--train", str(train), "--test", str(test)),
        *("--labels", *LABELS, "--shots", "1", "2", "8", "--seeds", "2", "--json"),
    )
    assert code == 0, err
    payload = json.loads(out)
    assert {"weighted_f1", "accuracy"} <= set(payload["zeroshot"])
    assert [p["shots"] for p in payload["fewshot"]] == [1, 2, 8]
    for point in payload["fewshot"]:
        assert {"shots", "weighted_f1", "accuracy", "linear_probe_weighted_f1"} <= set(point)
        assert 0.0 <= point["weighted_f1"] <= 1.0 and 0.0 <= point["linear_probe_weighted_f1"] <= 1.0
    zero_shot = payload["zeroshot"]["weighted_f1"]
    eight = payload["fewshot"][-1]
    assert zero_shot < 0.6
    assert eight["weighted_f1"] >= zero_shot + 0.2
    assert eight["adapter_used"] == 1.0


def test_table_and_png_without_json(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = folders
    code, out, err = run(
        capsys,
        *("eval", "fewshot", "--model", str(tiny_checkpoint), "--train", str(train), "--test", str(test)),
        *("--labels", *LABELS, "--shots", "2", "4", "--seeds", "1", "--out", str(tmp_path / "out")),
    )
    assert code == 0, err
    assert "weighted F1" in out and "zero-shot" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "2", "4"]
    [png] = list((tmp_path / "out").rglob("fewshot.png"))
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (640, 440)


def test_too_few_training_images_is_one_line_error(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, folders: tuple[Path, Path]
) -> None:
    train, test = folders
    code, out, err = run(
        capsys,
        *("eval", "fewshot", "--model", str(tiny_checkpoint), "--train", str(train), "--test", str(test)),
        *("--labels", *LABELS, "--shots", "16", "--json"),
    )
    assert code != 0 and out == ""
    assert err.startswith("error: 16 shots need 16 training images") and err.count("\n") == 1
