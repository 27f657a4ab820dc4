"""`plipbot eval ...` end to end on generated data and a tiny random checkpoint (NOT PLIP).

The zero-shot predictions are held to the reference implementation, transformers' CLIPModel with its
own processor and tokenizer, image by image; the reported metrics to scikit-learn's on those
predictions, to 1e-9.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

from evaluation.plots import DPI, confusion_size_inches
from model.encoder import ClipEncoder
from model.presets import get_preset
from model.weights import resolve_weights
from plipbot.cli import main
from tests.checkpoints import TINY, make_hf_clip
from tests.imagegen import encode

KATHER_FOLDERS = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
KATHER_TEMPLATE = "An H&E image patch of {}."


def _tile(colour: tuple[int, int, int], seed: int, size: int = 48) -> Image.Image:
    """A colour with a little noise: classes differ by colour, images within a class by noise."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(colour, dtype=np.float64)[None, None, :] + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _colour(index: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(100 + index)
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _class_folders(root: Path, names: list[str], per_class: int, seed: int = 0) -> Path:
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = _tile(_colour(c), seed=seed * 1000 + c * 100 + i)
            (root / name / f"{name.lower()}_{i:02d}.png").write_bytes(encode(image))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _reference(
    checkpoint: Path, images: list[Image.Image], texts: list[str]
) -> tuple[np.ndarray, np.ndarray, float]:
    """transformers CLIPModel + its processor and tokenizer, as PLIP's authors run it."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(checkpoint).eval()
    processor = CLIPImageProcessorPil.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def features(out: object) -> torch.Tensor:
        return out if torch.is_tensor(out) else out.pooler_output  # transformers 4 vs 5

    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        image_emb = features(model.get_image_features(pixel_values=pixels))
        tokens = tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        text_emb = features(
            model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        )
    normalise = torch.nn.functional.normalize
    return (
        normalise(image_emb, dim=-1).numpy(),
        normalise(text_emb, dim=-1).numpy(),
        float(model.logit_scale.detach().exp()),
    )


@pytest.fixture
def kather_like(tmp_path: Path) -> Path:
    return _class_folders(tmp_path / "CRC-like", KATHER_FOLDERS, per_class=3)


def test_zeroshot_json_equals_reference_model_and_sklearn(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, kather_like: Path, tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "eval", "zeroshot", "--model", str(tiny_checkpoint), "--dataset", str(kather_like),
        "--preset", "kather", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    labels = get_preset("kather").texts
    assert report["labels"] == labels and report["n"] == 27 and report["templates"] == [KATHER_TEMPLATE]
    assert report["model"]["title"].startswith("local checkpoint")
    assert report["precision"] == "fp32" and report["device"] == "cpu"  # the reference, unless asked

    # the reference model's predictions on the same files, image by image
    with open(report["files"]["predictions_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = [Image.open(row["image"]).convert("RGB") for row in rows]
    image_emb, text_emb, scale = _reference(
        tiny_checkpoint, images, [KATHER_TEMPLATE.format(x) for x in labels]
    )
    reference_probs = torch.softmax(torch.from_numpy(scale * image_emb @ text_emb.T), dim=-1).numpy()
    reference_pred = reference_probs.argmax(axis=1)
    assert [row["predicted_label"] for row in rows] == [labels[i] for i in reference_pred]
    ours_probs = np.array([[float(row[label]) for label in labels] for row in rows])
    np.testing.assert_allclose(ours_probs, reference_probs, atol=1e-4)
    assert len(set(reference_pred)) >= 3, "the generated data should not collapse onto one label"

    # the folder names (ADI, ...) were matched to the paper's labels
    folder_of = {
        "ADI": "adipose tissue",
        "MUS": "smooth muscle",
        "TUM": "colorectal adenocarcinoma epithelium",
    }
    for row in rows:
        folder = Path(row["image"]).parent.name
        if folder in folder_of:
            assert row["true_label"] == folder_of[folder]
    y_true = np.array([labels.index(row["true_label"]) for row in rows])
    every = list(range(len(labels)))
    assert report["weighted_f1"] == pytest.approx(
        f1_score(y_true, reference_pred, labels=every, average="weighted", zero_division=0), abs=1e-9
    )
    assert report["macro_f1"] == pytest.approx(
        f1_score(y_true, reference_pred, labels=every, average="macro", zero_division=0), abs=1e-9
    )
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, reference_pred), abs=1e-9)
    per_class_f1 = f1_score(y_true, reference_pred, labels=every, average=None, zero_division=0)
    assert [report["per_class"][label]["f1"] for label in labels] == pytest.approx(
        list(per_class_f1), abs=1e-9
    )
    assert report["per_class"]["adipose tissue"]["folder"] == "ADI"
    assert (
        np.array(report["confusion"]).sum() == 27
        and np.array(report["confusion"]).sum(axis=1).tolist() == [3] * 9
    )
    assert 0.0 <= report["ece"] <= 1.0 and len(report["calibration"]["bins"]) == 15

    width, height = confusion_size_inches(9, max(map(len, labels)))
    assert Image.open(report["files"]["confusion_png"]).size == (int(width * DPI), int(height * DPI))
    assert Image.open(report["files"]["reliability_png"]).size == (600, 600)


def test_zeroshot_table_templates_report_and_cached_rerun(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    dataset = _class_folders(tmp_path / "mine", ["Tumor_Tissue", "normal tissue", "STROMA"], per_class=2)
    argv = [
        "eval", "zeroshot", "--model", str(tiny_checkpoint), "--dataset", str(dataset),
        "--labels", "tumor tissue", "normal tissue", "stroma",
        "--template", "An H&E image of {}.", "--template", "a photo of {}.", "--templates-report",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "weighted F1" in out and "macro F1" in out and "ECE" in out
    assert "tumor tissue (Tumor_Tissue)" in out and "stroma (STROMA)" in out
    assert "confusion matrix" in out and "reliability.png" in out
    report_lines = [
        line for line in out.splitlines() if line.startswith(("An H&E image of {}.", "a photo of {}."))
    ]
    assert len(report_lines) == 2 and any(line.startswith("ensemble") for line in out.splitlines())

    cache_files = list((tmp_path / "data" / "cache" / "image-embeddings").rglob("*.f32"))
    assert len(cache_files) == 6
    for path in cache_files:  # the rerun must read these, so make them recognisably different
        path.write_bytes(np.ones(32, dtype=np.float32).tobytes())
    code, rerun, _ = run(capsys, *argv)
    assert code == 0 and rerun != out  # all vectors equal now: the cached ones were used
    assert "accuracy 0.333" in rerun


def test_label_mismatch_is_one_line_listing_both_sides(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    dataset = _class_folders(tmp_path / "ds", ["tumor", "fat"], per_class=1)
    code, out, err = run(
        capsys, "eval", "zeroshot", "--model", str(tiny_checkpoint), "--dataset", str(dataset),
        "--labels", "tumor", "adipose tissue",
    )  # fmt: skip
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "folders without a label: fat" in err and "labels without a folder: adipose tissue" in err
    code, _, err = run(
        capsys, "eval", "zeroshot", "--model", str(tiny_checkpoint), "--dataset", str(tmp_path / "x")
    )
    assert code == 2 and "no such folder" in err and err.count("\n") == 1


def test_linear_probe_json_equals_sklearn_on_the_same_embeddings(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    names = ["benign", "malignant", "normal"]
    train = _class_folders(tmp_path / "train", names, per_class=6, seed=1)
    test = _class_folders(tmp_path / "test", [n.upper() for n in names], per_class=4, seed=2)
    code, out, err = run(
        capsys, "eval", "linear-probe", "--model", str(tiny_checkpoint), "--train", str(train),
        "--test", str(test), "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["seeds"] == [0, 1, 2, 3, 4] and report["n_train"] == 18 and report["n_test"] == 12
    assert set(report["weighted_f1"]) == {"mean", "std", "min", "max"}

    encoder = ClipEncoder.from_weights(
        resolve_weights(str(tiny_checkpoint), tmp_path / "m"), device="cpu", precision="fp32"
    )

    def embed(root: Path) -> tuple[np.ndarray, np.ndarray]:
        paths = sorted(root.rglob("*.png"))
        return encoder.encode_images([Image.open(p) for p in paths]), np.array(
            [p.parent.name.lower() for p in paths]
        )

    train_x, train_y = embed(train)
    test_x, test_y = embed(test)
    expected = []
    for seed in range(5):
        probe = SGDClassifier(
            loss="log_loss",
            penalty="l2",
            alpha=0.01,
            class_weight="balanced",
            max_iter=10000,
            random_state=seed,
        ).fit(train_x, train_y)
        expected.append(f1_score(test_y, probe.predict(test_x), average="weighted"))
    assert [run["weighted_f1"] for run in report["runs"]] == pytest.approx(expected, abs=1e-9)
    assert report["weighted_f1"]["mean"] == pytest.approx(np.mean(expected), abs=1e-9)

    code, out, _ = run(
        capsys,
        "eval",
        "linear-probe",
        "--model",
        str(tiny_checkpoint),
        "--train",
        str(train),
        "--test",
        str(test),
    )
    assert code == 0 and "weighted_f1" in out and "5 seeds" in out


def test_retrieval_json_equals_reference_recall(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "imgs").mkdir()
    texts = [f"case {i}: {w} tissue" for i, w in enumerate(["fat", "muscle", "tumor", "mucus"] * 3)]
    lines = []
    for i, text in enumerate(texts):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(encode(_tile(_colour(i), seed=i)))
        lines.append(json.dumps({"image": f"imgs/{i}.png", "text": text}))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(lines) + "\n")
    code, out, err = run(
        capsys, "eval", "retrieval", "--model", str(tiny_checkpoint), "--pairs", str(pairs), "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 12
    images = [Image.open(tmp_path / "imgs" / f"{i}.png").convert("RGB") for i in range(12)]
    image_emb, text_emb, _ = _reference(tiny_checkpoint, images, texts)
    similarity = text_emb @ image_emb.T
    targets = np.arange(12)
    for k in (1, 10):
        t2i = top_k_accuracy_score(targets, similarity, k=k, labels=targets)
        i2t = top_k_accuracy_score(targets, similarity.T, k=k, labels=targets)
        assert report["text_to_image"][f"R@{k}"] == pytest.approx(t2i, abs=1e-9)
        assert report["image_to_text"][f"R@{k}"] == pytest.approx(i2t, abs=1e-9)
    assert report["text_to_image"]["R@50"] == 1.0  # 12 candidates

    pairs.write_text('{"image": "imgs/missing.png", "text": "x"}\n')
    capsys.readouterr()  # the reference model's loading bar
    code, _, err = run(capsys, "eval", "retrieval", "--model", str(tiny_checkpoint), "--pairs", str(pairs))
    assert code == 2 and "missing.png" in err and err.count("\n") == 1


def test_compare_keeps_the_given_order_and_marks_the_best(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path, kather_like: Path
) -> None:
    other = tmp_path / "other-random"
    make_hf_clip(other, TINY, seed=7, content_dominant=True)
    code, out, err = run(
        capsys, "eval", "compare", "--models", str(other), str(tiny_checkpoint),
        "--dataset", str(kather_like), "--preset", "kather", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert [row["model"] for row in report["models"]] == [str(other), str(tiny_checkpoint)]
    for key in ("weighted_f1", "macro_f1", "accuracy"):
        values = [row[key] for row in report["models"]]
        assert report["best"][key] == report["models"][int(np.argmax(values))]["model"]
    eces = [row["ece"] for row in report["models"]]
    assert report["best"]["ece"] == report["models"][int(np.argmin(eces))]["model"]

    # the per-model numbers are those of `eval zeroshot` on the same data
    code, single, _ = run(
        capsys, "eval", "zeroshot", "--model", str(tiny_checkpoint), "--dataset", str(kather_like), "--json"
    )
    assert json.loads(single)["weighted_f1"] == pytest.approx(report["models"][1]["weighted_f1"], abs=1e-12)

    code, table, _ = run(
        capsys, "eval", "compare", "--models", str(tiny_checkpoint), str(other), "--dataset", str(kather_like)
    )
    lines = table.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(str(tiny_checkpoint)))
    second = next(i for i, line in enumerate(lines) if line.startswith(str(other)))
    assert first < second and "weighted F1" in table
    assert sum(line.count("*") for line in lines[first : second + 1]) == 4  # one mark per column


def test_compare_fails_fast_when_a_models_weights_are_missing(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, kather_like: Path
) -> None:
    code, out, err = run(
        capsys, "eval", "compare", "--models", str(tiny_checkpoint), "plip", "--dataset", str(kather_like)
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and "PLIP" in err


@pytest.mark.gpu
def test_zeroshot_runs_on_the_gpu_and_agrees_with_the_cpu(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, kather_like: Path, tmp_path: Path
) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    reports = {}
    for device in ("cpu", "auto"):
        code, out, err = run(
            capsys, "eval", "zeroshot", "--model", str(tiny_checkpoint), "--dataset", str(kather_like),
            "--device", device, "--json", "--out", str(tmp_path / device),
        )  # fmt: skip
        assert code == 0, err
        reports[device] = json.loads(out)
    assert reports["auto"]["device"].startswith("cuda")  # `auto` picks the GPU
    assert reports["auto"]["confusion"] == reports["cpu"]["confusion"]
    assert reports["auto"]["weighted_f1"] == pytest.approx(reports["cpu"]["weighted_f1"], abs=1e-9)
