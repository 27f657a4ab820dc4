"""The `plipbot` command line as a contract: embed, classify, model; errors are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.encoder import ClipEncoder
from model.weights import resolve_weights
from plipbot.cli import main
from tests.imagegen import encode, ihc, texture

PLIPBOT = str(Path(sys.executable).parent / "plipbot")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = []
    for i, image in enumerate([ihc(), texture((160, 120), seed=2), ihc().convert("RGBA").rotate(90)]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(encode(image, "PNG"))
        paths.append(path)
    return paths


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_writes_normalised_rows_in_input_order(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, images: list[Path], tmp_path: Path
) -> None:
    out_file = tmp_path / "out" / "emb.npz"
    texts = ["An H&E image patch of debris.", "mucus"]
    code, out, _ = run(
        capsys,
        "embed",
        "--model",
        str(tiny_checkpoint),
        "--images",
        *map(str, images),
        "--texts",
        *texts,
        "--out",
        str(out_file),
    )
    assert code == 0 and "local checkpoint" in out
    data = np.load(out_file)
    assert data["image"].shape == (3, 32) and data["text"].shape == (2, 32)
    assert data["image"].dtype == np.float32 and data["text"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(data["image"], axis=1), 1, atol=1e-5)
    encoder = ClipEncoder.from_weights(resolve_weights(str(tiny_checkpoint), tmp_path / "m"), device="cpu")
    from model.images import load_image

    np.testing.assert_allclose(
        data["image"], encoder.encode_images([load_image(p) for p in images]), atol=1e-5
    )
    np.testing.assert_allclose(data["text"], encoder.encode_texts(texts), atol=1e-5)


def test_embed_texts_only_gives_empty_image_array(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    code, _, _ = run(
        capsys, "embed", "--model", str(tiny_checkpoint), "--texts", "a", "--out", str(tmp_path / "t.npz")
    )
    data = np.load(tmp_path / "t.npz")
    assert code == 0 and data["image"].shape == (0, 32) and data["text"].shape == (1, 32)


def test_classify_json_contract(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, images: list[Path]
) -> None:
    code, out, _ = run(
        capsys,
        "classify",
        "--model",
        str(tiny_checkpoint),
        *map(str, images),
        "--preset",
        "kather",
        "--top-k",
        "4",
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert [entry["image"] for entry in result] == [str(p) for p in images]
    for entry in result:
        probs = [s["probability"] for s in entry["suggestions"]]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True)
        assert all(0 <= p <= 1 for p in probs)
        assert {s["label"] for s in entry["suggestions"]} <= set(
            [
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
        )
        assert entry["model"]["name"] == "local" and entry["model"]["revision"].startswith("sha256:")
        assert "PLIP" not in entry["model"]["title"]
        assert isinstance(entry["uncertain"], bool)


def test_classify_labels_and_template_table(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, images: list[Path]
) -> None:
    code, out, _ = run(
        capsys,
        "classify",
        "--model",
        str(tiny_checkpoint),
        str(images[0]),
        "--labels",
        "benign",
        "malignant",
        "--template",
        "An H&E image of {} tissue.",
    )
    assert code == 0
    assert "benign" in out and "malignant" in out and "%" in out
    assert "model: local checkpoint tiny-random-clip" in out
    assert "not a diagnosis" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "{ckpt_model}", "missing.png", "--preset", "kather"], "missing.png: no such file"),
        (["classify", "{ckpt_model}", "{notimage}", "--preset", "kather"], "not an image"),
        (["classify", "--model", "nope", "{img}"], "Unknown model 'nope'"),
        (["classify", "--model", "plip", "{img}"], "plipbot model fetch plip"),
        (["classify", "{ckpt_model}", "{img}", "--labels"], "at least one label"),
        (["classify", "{ckpt_model}", "{img}", "--labels", "a", "A"], "appears twice"),
        (["classify", "{ckpt_model}", "{img}", "--preset", "zzz"], "Unknown preset"),
        (["classify", "{ckpt_model}", "{img}", "--labels", "a", "--template", "no slot"], "exactly one"),
        (["embed", "{ckpt_model}", "--out", "x.npz"], "Nothing to embed"),
        (
            ["classify", "{ckpt_model}", "{img}", "--precision", "fp16", "--device", "cpu"],
            "fp16 needs a CUDA GPU",
        ),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_errors_are_one_line_without_traceback(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tiny_checkpoint: Path,
    images: list[Path],
    tmp_path: Path,
) -> None:
    notimage = tmp_path / "notes.png"
    notimage.write_text("patient notes, definitely not a PNG")
    expanded: list[str] = []
    for arg in argv:
        if arg == "{ckpt_model}":
            expanded += ["--model", str(tiny_checkpoint)]
        else:
            expanded.append(arg.format(img=images[0], notimage=notimage))
    with pytest.raises(SystemExit) if argv == ["frobnicate"] else _no_exit():
        code, _, err = run(capsys, *expanded)
        assert code != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
        assert "Traceback" not in err
    if argv == ["frobnicate"]:
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


class _no_exit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_settings_from_environment_and_override(
    capsys: pytest.CaptureFixture[str],
    tiny_checkpoint: Path,
    images: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PLIPBOT_MODEL__NAME", str(tiny_checkpoint))
    code, out, _ = run(capsys, "classify", str(images[0]), "--preset", "pannuke", "--json")
    assert code == 0 and json.loads(out)[0]["model"]["source"] == str(tiny_checkpoint)
    assert (tmp_path / "data" / "models" / "local").is_dir()  # PLIPBOT_DATA_DIR holds the converted cache
    code, _, err = run(capsys, "classify", "--model", "plip", str(images[0]))  # --model wins over the env
    assert code != 0 and "PLIP weights" in err
    monkeypatch.setenv("PLIPBOT_MODEL__PRECISION", "fp64")
    code, _, err = run(capsys, "classify", str(images[0]))
    assert code != 0 and "invalid setting model.precision" in err


def test_dotenv_file_is_read(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, images: list[Path]
) -> None:
    Path(".env").write_text(f"PLIPBOT_MODEL__NAME={tiny_checkpoint}\n")  # cwd is the test's tmp dir
    code, out, _ = run(capsys, "classify", str(images[0]), "--labels", "a", "b", "--json")
    assert code == 0 and json.loads(out)[0]["model"]["source"] == str(tiny_checkpoint)


def test_model_list_info_presets(capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path) -> None:
    code, out, _ = run(capsys, "model", "list")
    assert code == 0 and "plip" in out and "67ade53d" in out and "quiltnet" in out
    code, out, _ = run(capsys, "model", "info", "plip")
    assert (
        code == 0
        and "vinid/plip" in out
        and "ViT-B-32-quickgelu" in out
        and "An H&E image patch of {}." in out
    )
    code, out, _ = run(capsys, "model", "info", str(tiny_checkpoint))
    assert code == 0 and "local checkpoint" in out
    code, out, _ = run(capsys, "model", "presets")
    assert code == 0 and "kather" in out and "wsss4luad" in out
    code, _, err = run(capsys, "model", "fetch", "plip")
    assert code != 0 and ("unreachable" in err or "downloads are off" in err)


def test_console_script_end_to_end(tiny_checkpoint: Path, images: list[Path], tmp_path: Path) -> None:
    """The installed `plipbot` executable, as a user runs it."""
    env = {**os.environ, "PLIPBOT_DATA_DIR": str(tmp_path / "d")}
    ok = subprocess.run(
        [
            PLIPBOT,
            "classify",
            "--model",
            str(tiny_checkpoint),
            str(images[1]),
            "--preset",
            "wsss4luad",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)[0]["suggestions"][0]["label"] in {"tumor", "normal"}
    bad = subprocess.run(
        [PLIPBOT, "classify", "--model", "plip", str(images[1])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_model_fetch_of_a_local_checkpoint_converts_it(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path
) -> None:
    code, out, err = run(capsys, "model", "fetch", str(tiny_checkpoint))
    assert code == 0, err
    assert "local checkpoint tiny-random-clip" in out and "cached in" in out
