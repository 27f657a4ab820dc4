"""What learning from confirmed examples costs an answer, and what it buys on generated data.

1. Latency, in one process, against the zero-shot answer it sits on: encoding one image with a random
   checkpoint of PLIP's shape (ViT-B/32, NOT PLIP: speed does not depend on the weights) plus zero-shot
   suggestions over the 9 Kather labels. On top of that, the adapter's step as the worker runs it
   (`ServerAdapters.adapter_for` reading the server's revision and switch from the examples database,
   then applying the cached adapter), and the refit after a confirmation (reading the examples and
   choosing alpha/beta by leave-one-out), for servers with 20, 200 and 1000 examples.
2. The few-shot table (`learning.fewshot`, what `plipbot eval fewshot` prints) on generated embeddings
   where zero-shot is near chance but classes separate, and where zero-shot is already right.

    .venv/bin/python bench/adapter_bench.py [--examples 20 200 1000] [--repeats 30] [--db URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name
from learning.adapters import ServerAdapters, adapt_logits
from learning.examples import ExampleOrigin, ExamplesStore, model_key
from learning.fewshot import curve_table, few_shot_curve
from tests.learning.synthetic import LOGIT_SCALE, already_named, separable_but_misnamed

GUILD, CHANNEL = 1, 2


def timings_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def fill(store: ExamplesStore, key: str, n: int, label_texts: list[str], dim: int, seed: int) -> None:
    """n examples spread over the labels, clustered per label (like real confirmations)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(label_texts), dim))
    for i in range(n):
        label = i % len(label_texts)
        store.confirm(
            guild_id=GUILD,
            channel_id=CHANNEL,
            label_set_key="bench",
            label=label_texts[label],
            message_id=10_000 + i,
            attachment_id=1,
            poster_id=3,
            confirmer_id=4,
            origin=ExampleOrigin.MODERATOR,
            model_key=key,
            vector=centres[label] + 0.8 * rng.standard_normal(dim),
        )


def server_rows(
    store: ExamplesStore, n: int, context: tuple[Any, ...], repeats: int
) -> list[tuple[str, float, float]]:
    """The adapter's step (cache hit) and a confirmation's write + refit, for a server with n examples."""
    encoder, classifier, label_set, embeddings, vector, key = context
    cache_key = classifier.cache_key(label_set)
    store.forget_guild(GUILD)
    fill(store, key, n, label_set.texts, int(vector.shape[0]), seed=n)
    store.set_learning(GUILD, True, actor_id=4)
    adapters = ServerAdapters(store)

    def server_adapter() -> Any:
        return adapters.adapter_for(
            guild_id=GUILD,
            channel_id=CHANNEL,
            model_key=key,
            label_set=label_set,
            label_set_cache_key=cache_key,
            label_embeddings=embeddings,
            logit_scale=encoder.logit_scale,
        )

    def adapted_step() -> object:
        server = server_adapter()
        if server is None or server.adapter is None:
            return None
        answer = adapt_logits(vector, encoder.logit_scale * (vector @ embeddings.T), server.adapter)
        return classifier.prediction(answer.adapted, label_set, 3)

    adapted_step()
    fitted = server_adapter()
    state = "used" if fitted is not None and fitted.active else "guard: zero-shot"
    hit = timings_ms(adapted_step, repeats * 4)
    counter = iter(range(10**6))

    def confirm_and_refit() -> object:
        i = next(counter)
        store.confirm(
            guild_id=GUILD,
            channel_id=CHANNEL,
            label_set_key="bench",
            label=label_set.texts[i % len(label_set.texts)],
            message_id=10_000 + i % n,  # relabels an existing example: n stays fixed
            attachment_id=1,
            poster_id=3,
            confirmer_id=4,
            origin=ExampleOrigin.MODERATOR,
            model_key=key,
            vector=vector,
        )
        return adapted_step()

    def refit_only() -> object:
        adapters.invalidate(GUILD)  # what another worker process does after a confirmation elsewhere
        return adapted_step()

    state_read = timings_ms(lambda: store.state(GUILD, CHANNEL), repeats * 4)
    reread = timings_ms(refit_only, max(5, repeats // 2))
    refit = timings_ms(confirm_and_refit, max(5, repeats // 2))
    store.forget_guild(GUILD)
    return [
        (f"+ adapter step, {n} examples, cached ({state})", *summary(hit)),
        ("    of which the revision + switch read", *summary(state_read)),
        (f"+ refit: read {n} examples + leave-one-out fit", *summary(reread)),
        (f"+ confirmation write + refit, {n} examples", *summary(refit)),
    ]


def latency(args: argparse.Namespace) -> None:
    from model.encoder import ClipEncoder
    from model.presets import get_preset
    from model.weights import resolve_weights
    from model.zeroshot import ZeroShotClassifier
    from tests.checkpoints import VIT_B_32, make_hf_clip
    from tests.imagegen import ihc

    tmp = Path(tempfile.mkdtemp(prefix="plipbot-adapter-bench-"))
    make_hf_clip(tmp / "ckpt", VIT_B_32, seed=0)
    encoder = ClipEncoder.from_weights(resolve_weights(str(tmp / "ckpt"), tmp / "models"), device="cpu")
    classifier = ZeroShotClassifier(encoder)
    label_set = get_preset("kather")
    classifier.label_embeddings(label_set)  # cached, as in a warm worker
    picture = ihc().crop((0, 0, 224, 224))
    key = model_key(encoder.identity.name, encoder.identity.revision)

    def zero_shot_answer() -> object:
        vector = encoder.encode_images([picture])
        return classifier.predict_embeddings(vector, label_set, 3)

    vector = encoder.encode_images([picture])[0]
    baseline = timings_ms(zero_shot_answer, args.repeats)
    zs_only = timings_ms(lambda: classifier.predict_embeddings(vector[None], label_set, 3), args.repeats * 10)
    base_median = summary(baseline)[0]
    rows = [
        ("zero-shot answer: encode 1 image + 9-label suggestions", *summary(baseline)),
        ("  of which zero-shot suggestions from the vector", *summary(zs_only)),
    ]
    embeddings = classifier.label_embeddings(label_set)
    db_url = args.db or f"sqlite:///{tmp / 'bot.sqlite3'}"
    context = (encoder, classifier, label_set, embeddings, vector, key)
    for n in args.examples:
        with ExamplesStore(db_url) as store:
            rows += server_rows(store, n, context, args.repeats)

    print(f"CPU: {cpu_name()}; torch threads as configured; examples DB: {db_url.split(':', 1)[0]}")
    print("Random ViT-B/32 checkpoint (PLIP's shape, NOT PLIP). Medians and 90th percentiles in ms;")
    print("ratio = median / the zero-shot answer's median (same process).")
    print()
    width = max(len(row[0]) for row in rows)
    print(f"{'step':<{width}}  {'median ms':>9}  {'p90 ms':>8}  {'ratio':>7}")
    for name, median, p90 in rows:
        print(f"{name:<{width}}  {median:9.2f}  {p90:8.2f}  {median / base_median:7.3f}")


def fewshot_tables(args: argparse.Namespace) -> None:
    for title, data in (
        ("zero-shot near chance, classes separate in image space", separable_but_misnamed()),
        ("zero-shot already right (the guard should keep it)", already_named()),
    ):
        curve = few_shot_curve(
            data.train,
            data.train_labels,
            data.test,
            data.test_labels,
            data.label_embeddings,
            LOGIT_SCALE,
            [f"class {i}" for i in range(data.label_embeddings.shape[0])],
            args.shots,
            args.seeds,
        )
        print()
        print(f"Few-shot on generated embeddings: {title} (5 classes, 64-d, {len(data.test_labels)} test)")
        print(curve_table(curve))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, nargs="+", default=[20, 200, 1000])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--db", help="examples database URL (default: a temporary SQLite file)")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if not args.skip_latency:
        latency(args)
    fewshot_tables(args)


if __name__ == "__main__":
    main()
