"""`plipbot eval fewshot`: the few-shot curve of the cache adapter on a labelled train/test folder pair.

`plipbot eval fewshot --model M --train DIR --test DIR (--labels L... | --preset NAME) [--template T]
--shots 1 2 4 8 16 [--seeds 3] [--json]`

`--json` prints one object (a contract checked from outside; extend, never rename):
`{"zeroshot": {"weighted_f1", "accuracy", ...}, "fewshot": [{"shots", "weighted_f1", "accuracy",
"linear_probe_weighted_f1", ...}, ...]}`, each few-shot value the mean over seeds. Without it, a table
and a PNG of the curve.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from plipbot.cli_eval import DEFAULT_OUT, add_label_set_flags, labelled_embeddings, resolve_label_set
from plipbot.cli_model import add_model_flags
from plipbot.composition import Container


def register(esub: Any) -> None:
    """Add `fewshot` to the `plipbot eval` group."""
    p = esub.add_parser("fewshot", help="the cache adapter with k examples per label vs zero-shot")
    add_model_flags(p)
    p.add_argument(
        "--train", required=True, type=Path, metavar="DIR", help="examples: one sub-folder per class"
    )
    p.add_argument("--test", required=True, type=Path, metavar="DIR", help="scored: the same class folders")
    add_label_set_flags(p)
    p.add_argument(
        "--shots", type=int, nargs="+", default=[1, 2, 4, 8, 16], metavar="K", help="examples per label"
    )
    p.add_argument("--seeds", type=int, default=3, help="draws of the k examples per point (default 3)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"where the curve PNG goes (default {DEFAULT_OUT})"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_fewshot)


def run_fewshot(args: argparse.Namespace, container: Container) -> int:
    """`plipbot eval fewshot`."""
    from evaluation.datasets import scan_class_folders
    from learning.fewshot import curve_table, few_shot_curve, write_curve_png
    from plipbot.errors import InputFileError

    spec = resolve_label_set(args)
    if args.seeds < 1 or min(args.shots) < 1:
        raise InputFileError("--shots and --seeds must be positive numbers.")
    folders = scan_class_folders(args.train)  # before the model loads: too few images fail fast
    smallest = min(int((folders.targets == i).sum()) for i in range(len(folders.classes)))
    if max(args.shots) > smallest:
        raise InputFileError(
            f"{max(args.shots)} shots need {max(args.shots)} training images of every class; "
            f"the smallest class folder in {args.train} has {smallest}."
        )
    train = labelled_embeddings(container, args.train, spec)
    test = labelled_embeddings(container, args.test, spec)
    classifier = container.zero_shot
    label_set = spec.label_set
    curve = few_shot_curve(
        train.embeddings,
        train.y_true,
        test.embeddings,
        test.y_true,
        classifier.label_embeddings(label_set),
        classifier.encoder.logit_scale,
        label_set.texts,
        sorted(set(args.shots)),
        args.seeds,
        margin=container.settings.learning.margin,
    )
    identity = container.encoder.identity
    if args.json:
        payload = {"model": identity.as_dict(), "train": str(args.train), "test": str(args.test)}
        print(json.dumps({**payload, **curve.as_dict()}, indent=2, ensure_ascii=False))
        return 0
    folder = re.sub(r"[^A-Za-z0-9._-]+", "-", args.test.resolve().name).strip("-") or "dataset"
    path = args.out / folder / identity.key / "fewshot.png"
    write_curve_png(curve, path, f"{identity.title}: {args.test.name}")
    print(f"model    {identity.label}")
    print(f"train    {args.train}: {len(train.y_true)} images;  test {args.test}: {len(test.y_true)} images")
    print(f"labels   {', '.join(label_set.texts)}")
    print(
        f"seeds    {args.seeds} draw(s) of the k examples per point; the bot's adapter (leave-one-out guard)"
    )
    print()
    print(curve_table(curve))
    print()
    print(f"wrote {path}")
    return 0
