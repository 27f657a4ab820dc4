"""`plipbot eval ...`: measure a model on your own labelled data, the way the PLIP paper did.

- `zeroshot`: a folder per class against a label set (a preset or `--labels`), with prompt ensembles.
- `linear-probe`: logistic regression on frozen embeddings, train and test folders, 5 seeds.
- `retrieval`: a JSONL file of image-text pairs, Recall@1/10/50 both ways.
- `compare`: the zero-shot evaluation for several models, side by side.

Image embeddings are cached on disk per model revision and file content (`evaluation.embedding_cache`),
so a second run over the same folder reads vectors instead of running the model. The `--json` shapes
are a contract (README, tests): extend them, do not rename fields.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.precision import PRECISIONS
from plipbot.composition import Container
from plipbot.errors import InputFileError, LabelSetError

DEFAULT_OUT = Path("plipbot-eval")
BEST_MARK = "*"
if TYPE_CHECKING:
    from evaluation.datasets import LabelledImages
    from evaluation.zeroshot_eval import TemplateScore, ZeroShotEvaluation
    from model.zeroshot import LabelSet

# Evaluation measures the model as published, so it runs the reference precision unless asked
# otherwise (`--precision auto|bf16|...` measures a deployment's fast path against it).
EVAL_PRECISION = "fp32"


def add_eval_model_flags(p: argparse.ArgumentParser, *, model_flag: bool = True) -> None:
    """`--model` (unless the command takes several), precision (default fp32), device, batch, data dir."""
    if model_flag:
        p.add_argument("--model", help="registry name (plip, clip, quiltnet) or a local checkpoint path")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=EVAL_PRECISION,
        help=f"numeric precision (default {EVAL_PRECISION}, the reference; auto, bf16... measure fast paths)",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the GPU when there is one)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="images or prompts per forward pass")
    p.add_argument("--data-dir", type=Path, dest="data_dir", help="caches, weights and stores")


def add_label_set_flags(p: argparse.ArgumentParser) -> None:
    """`--preset NAME | --labels L...` and repeatable `--template`, as `plipbot classify` has them."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", help="a built-in label set (see `plipbot model presets`); default kather")
    group.add_argument("--labels", nargs="*", metavar="LABEL", help="labels, one per class folder")
    p.add_argument(
        "--template", action="append", metavar="T", help="prompt template with {}; repeat for an ensemble"
    )


def register(sub: Any) -> None:
    """Add `plipbot eval` and its commands."""
    parser = sub.add_parser(
        "eval", help="measure models on labelled data (zero-shot, linear probe, retrieval)"
    )
    esub = parser.add_subparsers(dest="eval_command", required=True)

    p = esub.add_parser("zeroshot", help="zero-shot classification of a folder per class")
    add_eval_model_flags(p)
    p.add_argument("--dataset", required=True, type=Path, metavar="DIR", help="one sub-folder per class")
    add_label_set_flags(p)
    p.add_argument(
        "--templates-report", action="store_true", help="each template's F1 next to the ensemble's"
    )
    p.add_argument("--bins", type=int, default=15, help="confidence bins for calibration (default 15)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"where PNGs and CSVs go (default {DEFAULT_OUT})"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_zeroshot)

    p = esub.add_parser("linear-probe", help="logistic regression on frozen image embeddings (5 seeds)")
    add_eval_model_flags(p)
    p.add_argument("--train", required=True, type=Path, metavar="DIR", help="one sub-folder per class")
    p.add_argument("--test", required=True, type=Path, metavar="DIR", help="the same class folders")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1; default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_linear_probe)

    p = esub.add_parser("retrieval", help="text-to-image and image-to-text Recall@1/10/50")
    add_eval_model_flags(p)
    p.add_argument("--pairs", required=True, type=Path, metavar="FILE.jsonl", help='lines {"image", "text"}')
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_retrieval)

    p = esub.add_parser("compare", help="the same zero-shot evaluation for several models, side by side")
    p.add_argument("--models", nargs="+", required=True, metavar="M", help="registry names or local paths")
    p.add_argument("--dataset", required=True, type=Path, metavar="DIR", help="one sub-folder per class")
    add_label_set_flags(p)
    add_eval_model_flags(p, model_flag=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_compare)

    from plipbot import cli_fewshot  # the few-shot curve of the cache adapter (issue: learning)

    cli_fewshot.register(esub)


# ---------------------------------------------------------------- shared steps (also used by other commands)


@dataclass(frozen=True)
class EvalLabelSet:
    """The label set to evaluate and how its dataset names class folders (a preset's mapping)."""

    label_set: LabelSet
    folder_names: dict[str, str]


def resolve_label_set(args: argparse.Namespace, default_preset: str = "kather") -> EvalLabelSet:
    """From `--labels` or `--preset` (default: kather), with `--template` replacing the templates."""
    from model.presets import get_preset, preset_folder_names
    from model.zeroshot import LabelSet

    labels = getattr(args, "labels", None)
    if labels is not None:
        if not labels:
            raise LabelSetError("--labels needs at least one label.")
        label_set, folder_names = LabelSet.from_texts(labels), {}
    else:
        name = getattr(args, "preset", None) or default_preset
        label_set, folder_names = get_preset(name), preset_folder_names(name)
    if getattr(args, "template", None):
        label_set = label_set.with_templates(args.template)
    return EvalLabelSet(label_set, folder_names)


def embed_paths(container: Container, paths: list[Path], description: str) -> np.ndarray:
    """Image embeddings of files through the configured encoder and the on-disk cache."""
    from evaluation.embedding_cache import EmbeddingCache, embed_image_files

    encoder = container.encoder
    cache = EmbeddingCache.for_encoder(container.settings.cache_dir, encoder)
    return embed_image_files(paths, encoder, cache, container.image_limits, description=description)


@dataclass(frozen=True)
class LabelledEmbeddings:
    """A class-folder dataset embedded and matched to a label set."""

    dataset: LabelledImages
    embeddings: np.ndarray
    y_true: np.ndarray  # label index per image
    folder_of_label: tuple[str, ...]  # class folder name per label index


def labelled_embeddings(container: Container, root: Path, spec: EvalLabelSet) -> LabelledEmbeddings:
    """Scan, match folders to labels (before loading the model, so a mismatch fails fast), embed."""
    from evaluation.datasets import match_classes, scan_class_folders

    dataset = scan_class_folders(root)
    label_of_class = match_classes(dataset.classes, spec.label_set.texts, spec.folder_names)
    folder_of_label = [""] * len(spec.label_set.labels)
    for class_index, label_index in enumerate(label_of_class):
        folder_of_label[label_index] = dataset.classes[class_index]
    embeddings = embed_paths(container, list(dataset.paths), f"embedding {root.name}")
    return LabelledEmbeddings(dataset, embeddings, label_of_class[dataset.targets], tuple(folder_of_label))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "dataset"


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------- zeroshot


def _zero_shot_json(
    container: Container, data: LabelledEmbeddings, result: ZeroShotEvaluation
) -> dict[str, Any]:
    from evaluation.zeroshot_eval import label_set_templates

    metrics = result.metrics
    encoder = container.encoder
    return {
        "model": encoder.identity.as_dict(),
        "device": str(encoder.device),
        "precision": encoder.precision,
        "dataset": str(data.dataset.root),
        "label_set": result.label_set.name,
        "templates": label_set_templates(result.label_set, container.encoder.default_template),
        "n": metrics.n,
        "weighted_f1": metrics.weighted_f1,
        "macro_f1": metrics.macro_f1,
        "accuracy": metrics.accuracy,
        "ece": result.calibration.ece,
        "labels": list(metrics.labels),
        "per_class": {
            row["label"]: {"folder": folder, **{k: v for k, v in row.items() if k != "label"}}
            for row, folder in zip(metrics.per_class(), data.folder_of_label, strict=True)
        },
        "confusion": metrics.confusion.tolist(),
        "calibration": result.calibration.as_dict(),
    }


def _write_predictions(path: Path, data: LabelledEmbeddings, result: ZeroShotEvaluation) -> None:
    labels = result.label_set.texts
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "true_label", "predicted_label", "confidence", *labels])
        for image, truth, probs in zip(data.dataset.paths, result.y_true, result.probabilities, strict=True):
            best = int(probs.argmax())
            writer.writerow(
                [str(image), labels[truth], labels[best], f"{probs[best]:.6f}", *(f"{p:.6f}" for p in probs)]
            )


def _print_zero_shot(
    container: Container, data: LabelledEmbeddings, result: ZeroShotEvaluation, files: list[Path]
) -> None:
    from evaluation.zeroshot_eval import label_set_templates

    metrics, identity = result.metrics, container.encoder.identity
    templates = label_set_templates(result.label_set, container.encoder.default_template)
    print(f"model    {identity.label} on {container.encoder.device}, {container.encoder.precision}")
    print(f"dataset  {data.dataset.root}: {metrics.n} images, {len(metrics.labels)} classes")
    print(f"labels   {result.label_set.name}; template(s): {' | '.join(templates)}")
    print()
    print(
        f"weighted F1 {metrics.weighted_f1:.3f}   macro F1 {metrics.macro_f1:.3f}   "
        f"accuracy {metrics.accuracy:.3f}   ECE {result.calibration.ece:.3f}"
    )
    print()
    names = [
        f"{label} ({folder})" if folder != label else label
        for label, folder in zip(metrics.labels, data.folder_of_label, strict=True)
    ]
    width = max(12, *map(len, names))
    print(f"{'label (folder)':<{width}}  precision  recall     f1  support")
    for name, row in zip(names, metrics.per_class(), strict=True):
        scores = f"{row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        print(f"{name:<{width}}  {scores}")
    print()
    print("confusion matrix (rows: true folder, columns: predicted)")
    short = [folder[:8] for folder in data.folder_of_label]
    cell = max(5, *map(len, short), len(str(int(metrics.confusion.max()))))
    row_width = max(map(len, short))
    print(" " * row_width + "  " + " ".join(f"{s:>{cell}}" for s in short))
    for name, row in zip(short, metrics.confusion, strict=True):
        print(f"{name:<{row_width}}  " + " ".join(f"{int(v):>{cell}}" for v in row))
    print()
    print("wrote " + ", ".join(str(f) for f in files))


def _print_templates_report(rows: list[TemplateScore]) -> None:
    width = max(len("template"), *(len(r.template) for r in rows))
    print()
    print(f"{'template':<{width}}  weighted F1  macro F1  accuracy")
    for r in rows:
        print(f"{r.template:<{width}}  {r.weighted_f1:11.3f}  {r.macro_f1:8.3f}  {r.accuracy:8.3f}")


def run_zeroshot(args: argparse.Namespace, container: Container) -> int:
    """`plipbot eval zeroshot`."""
    from evaluation.plots import write_confusion_png, write_reliability_png
    from evaluation.zeroshot_eval import evaluate_zero_shot, templates_report

    if args.bins < 1:
        raise InputFileError("--bins must be at least 1.")
    spec = resolve_label_set(args)
    data = labelled_embeddings(container, args.dataset, spec)
    classifier = container.zero_shot
    result = evaluate_zero_shot(classifier, data.embeddings, data.y_true, spec.label_set, args.bins)
    identity = container.encoder.identity
    out_dir = args.out / _slug(args.dataset.resolve().name) / identity.key
    title = f"{identity.title}: {args.dataset.name}"
    files = [
        write_confusion_png(
            result.metrics.confusion, result.metrics.labels, out_dir / "confusion.png", title
        ),
        write_reliability_png(result.calibration, out_dir / "reliability.png", title),
        out_dir / "predictions.csv",
    ]
    _write_predictions(files[2], data, result)
    report = (
        templates_report(classifier, data.embeddings, data.y_true, spec.label_set)
        if (args.templates_report)
        else None
    )
    if args.json:
        payload = _zero_shot_json(container, data, result)
        payload["files"] = {
            "confusion_png": str(files[0]),
            "reliability_png": str(files[1]),
            "predictions_csv": str(files[2]),
        }
        if report is not None:
            payload["templates_report"] = [r.as_dict() for r in report]
        _print_json(payload)
        return 0
    _print_zero_shot(container, data, result, files)
    if report is not None:
        _print_templates_report(report)
    return 0


# ---------------------------------------------------------------- linear probe


def run_linear_probe(args: argparse.Namespace, container: Container) -> int:
    """`plipbot eval linear-probe`."""
    from evaluation.datasets import match_folder_classes, scan_class_folders
    from evaluation.linear_probe import SUMMARY_METRICS, linear_probe

    if args.seeds < 1:
        raise InputFileError("--seeds must be at least 1.")
    train = scan_class_folders(args.train)
    test = scan_class_folders(args.test)
    if len(train.classes) < 2:
        raise LabelSetError(f"{args.train} has one class folder; a probe needs at least two.")
    train_class_of_test = match_folder_classes(train.classes, test.classes)
    train_x = embed_paths(container, list(train.paths), f"embedding {args.train.name}")
    test_x = embed_paths(container, list(test.paths), f"embedding {args.test.name}")
    result = linear_probe(
        train_x,
        train.targets,
        test_x,
        train_class_of_test[test.targets],
        train.classes,
        seeds=range(args.seeds),
    )
    identity = container.encoder.identity
    if args.json:
        _print_json(
            {
                "model": identity.as_dict(),
                "train": str(args.train),
                "test": str(args.test),
                **result.as_dict(),
            }
        )
        return 0
    print(f"model    {identity.label}")
    print(f"train    {args.train}: {result.n_train} images, {len(train.classes)} classes")
    print(f"test     {args.test}: {result.n_test} images")
    print(
        "probe    SGD logistic regression (log loss, L2 alpha 0.01, balanced classes), "
        f"{len(result.runs)} seeds"
    )
    print()
    print(f"{'metric':<12}  {'mean':>6}  {'sd':>6}  {'min':>6}  {'max':>6}")
    for metric in SUMMARY_METRICS:
        s = result.summary(metric)
        print(f"{metric:<12}  {s['mean']:6.3f}  {s['std']:6.3f}  {s['min']:6.3f}  {s['max']:6.3f}")
    return 0


# ---------------------------------------------------------------- retrieval


def run_retrieval(args: argparse.Namespace, container: Container) -> int:
    """`plipbot eval retrieval`."""
    from evaluation.datasets import load_pairs
    from evaluation.embedding_cache import progress_bar
    from evaluation.retrieval import evaluate_retrieval

    pairs = load_pairs(args.pairs)
    missing = [str(p.image) for p in pairs if not p.image.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputFileError(f"{args.pairs}: image(s) not found: {', '.join(missing[:3])}{more}.")
    image_emb = embed_paths(container, [p.image for p in pairs], "embedding images")
    encoder = container.encoder
    texts = [p.text for p in pairs]
    text_emb = np.empty_like(image_emb)
    step = max(encoder.batch_size, 256)
    with progress_bar(len(texts), "embedding texts") as bar:
        for start in range(0, len(texts), step):
            text_emb[start : start + step] = encoder.encode_texts(texts[start : start + step])
            bar.update(len(texts[start : start + step]))  # type: ignore[attr-defined]
    result = evaluate_retrieval(image_emb, text_emb)
    if args.json:
        _print_json({"model": encoder.identity.as_dict(), "pairs": str(args.pairs), **result.as_dict()})
        return 0
    print(f"model    {encoder.identity.label}")
    print(f"pairs    {args.pairs}: {result.n}")
    print()
    ks = list(result.text_to_image)
    print(f"{'direction':<14}" + "".join(f"{'R@' + str(k):>8}" for k in ks))
    for name, values in (("text -> image", result.text_to_image), ("image -> text", result.image_to_text)):
        print(f"{name:<14}" + "".join(f"{values[k]:8.3f}" for k in ks))
    return 0


# ---------------------------------------------------------------- compare

COMPARE_COLUMNS = (  # (json key, header, higher is better)
    ("weighted_f1", "weighted F1", True),
    ("macro_f1", "macro F1", True),
    ("accuracy", "accuracy", True),
    ("ece", "ECE", False),
)


def _model_container(container: Container, name: str) -> Container:
    settings = container.settings
    model = settings.model.model_copy(update={"name": name})
    return Container(settings.model_copy(update={"model": model}))


def best_per_column(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Index of the best row per column (first one on ties): highest, or lowest for ECE."""
    best = {}
    for key, _, higher in COMPARE_COLUMNS:
        values = [row[key] for row in rows]
        best[key] = int(np.argmax(values) if higher else np.argmin(values))
    return best


def run_compare(args: argparse.Namespace, container: Container) -> int:
    """`plipbot eval compare`: the same images and label set for every model, in the order given."""
    from evaluation.datasets import match_classes, scan_class_folders
    from evaluation.zeroshot_eval import evaluate_zero_shot

    if len(set(args.models)) != len(args.models):
        raise InputFileError("--models lists a model twice.")
    spec = resolve_label_set(args)
    match_classes(scan_class_folders(args.dataset).classes, spec.label_set.texts, spec.folder_names)
    pending = [(name, _model_container(container, name)) for name in args.models]
    for _, model_container in pending:  # every model's weights before any work: fail in seconds, not hours
        _ = model_container.weights
    rows = []
    while pending:  # popped, so only one model is in memory at a time
        name, model_container = pending.pop(0)
        data = labelled_embeddings(model_container, args.dataset, spec)
        result = evaluate_zero_shot(model_container.zero_shot, data.embeddings, data.y_true, spec.label_set)
        metrics = result.metrics
        rows.append(
            {
                "model": name,
                "identity": model_container.encoder.identity.as_dict(),
                "n": metrics.n,
                "weighted_f1": metrics.weighted_f1,
                "macro_f1": metrics.macro_f1,
                "accuracy": metrics.accuracy,
                "ece": result.calibration.ece,
            }
        )
    best = best_per_column(rows)
    if args.json:
        _print_json(
            {
                "dataset": str(args.dataset),
                "label_set": spec.label_set.name,
                "models": rows,
                "best": {key: rows[index]["model"] for key, index in best.items()},
            }
        )
        return 0
    names = [
        f"{row['model']}  {row['identity']['label']}"
        if row["model"] != row["identity"]["label"]
        else row["model"]
        for row in rows
    ]
    width = max(len("model"), *map(len, names))
    print(f"dataset  {args.dataset}: {rows[0]['n']} images; label set {spec.label_set.name}")
    print()
    print(f"{'model':<{width}}" + "".join(f"  {header:>12}" for _, header, _ in COMPARE_COLUMNS))
    for index, (name, row) in enumerate(zip(names, rows, strict=True)):
        cells = []
        for key, _, _ in COMPARE_COLUMNS:
            mark = BEST_MARK if best[key] == index else " "
            cells.append(f"  {row[key]:11.3f}{mark}")
        print(f"{name:<{width}}" + "".join(cells))
    print()
    print(f"{BEST_MARK} best in its column (for ECE, the lowest)")
    return 0
