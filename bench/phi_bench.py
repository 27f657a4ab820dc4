"""Recall and false positives of the PHI screen, per category, before and after, and of the candidate
libraries, on the labelled caption set of tests/ingest/phi_captions.py.

    .venv/bin/python bench/phi_bench.py [--before REV] [--candidates] [--show-misses] [--ocr N]

A caption counts as caught when the screen reports anything for it (held or rejected); a clean
caption counts as a false positive on the same rule. "before" is `ingest/phi.py` as of REV (read with
`git show`, default: the last commit before the clinical screen), which screened captions only;
every other screen sees the caption and its tags. `--candidates` also runs the libraries that were
evaluated, where importable (they are not dependencies; install them into a scratch venv to compare):

* presidio-analyzer's pattern recognizers (no NLP engine: its only English models come from
  outside PyPI), scores >= 0.3;
* scrubadub's default detectors plus its date-of-birth detector (its name detectors need nltk or
  spaCy model data that cannot be installed offline);
* philter-lite's full Philter pipeline (philter_delta config), with a capitalisation-based part-of-
  speech stand-in, since `nltk.pos_tag` needs tagger data that is not on PyPI.

Timing is per caption, mean and worst, on this CPU, in the same process.

`--ocr N` also reads N generated slide-label photographs (tests/ingest/slide_labels.py: two thirds
with a name, record number, accession number or date of birth, one third clean) through
`ingest.ocr` and the image-text screen, and prints recall per rotation, false positives, and time
per image (wall, and Tesseract's own CPU time).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import resource
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
from tests.ingest.phi_captions import LabelledCaption, labelled_captions  # noqa: E402

Screen = Callable[[str, tuple[str, ...]], bool]
BEFORE_REV = "a7c87ab"  # ingest/phi.py before the clinical screen (cue-word names, no URLs, no tags)


def before_screen(rev: str) -> Screen:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:ingest/phi.py"], check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType("phi_before")
    sys.modules["phi_before"] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"{rev}:ingest/phi.py", "exec"), module.__dict__)
    return lambda text, _tags: bool(module.screen_caption(text))


def after_screen() -> Screen:
    from ingest.phi import screen_post

    return lambda text, tags: bool(screen_post(text, tags))


def _joined(text: str, tags: tuple[str, ...]) -> str:
    return " ; ".join((text, *tags))


def presidio_screen() -> Screen:
    import tldextract  # presidio's e-mail check would fetch the public suffix list at first use

    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        DateRecognizer,
        EmailRecognizer,
        IpRecognizer,
        MedicalLicenseRecognizer,
        NhsRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    recognizers = [
        cls()
        for cls in (
            CreditCardRecognizer, DateRecognizer, EmailRecognizer, IpRecognizer,
            MedicalLicenseRecognizer, NhsRecognizer, PhoneRecognizer, UsSsnRecognizer,
        )
    ]

    def screen(text: str, tags: tuple[str, ...]) -> bool:
        joined = _joined(text, tags)
        return any(
            result.score >= 0.3
            for recognizer in recognizers
            for result in recognizer.analyze(joined, recognizer.supported_entities, None)
        )

    return screen


def scrubadub_screen() -> Screen:
    import scrubadub
    import scrubadub.detectors

    scrubber = scrubadub.Scrubber()
    scrubber.add_detector(scrubadub.detectors.DateOfBirthDetector)
    return lambda text, tags: any(True for _ in scrubber.iter_filth(_joined(text, tags)))


def philter_screen() -> Screen:
    import philter_lite
    from philter_lite import philter as philter_module

    def pos_stand_in(text: str) -> list[tuple[str, str]]:
        words = philter_module._get_clean(text)
        return [
            (w, "CD" if w.isdigit() else "NNP" if w[:1].isupper() else "NN") for w in words
        ]

    philter_module._get_pos = pos_stand_in
    config = Path(philter_lite.__file__).parent / "configs" / "philter_delta.toml"
    filters = philter_lite.load_filters(str(config))

    def screen(text: str, tags: tuple[str, ...]) -> bool:
        _include, _exclude, tracker = philter_lite.detect_phi(_joined(text, tags), filters)
        return bool(tracker.phi)

    return screen


Evaluation = tuple[dict[str, float], list[float], list[LabelledCaption]]


def evaluate(screen: Screen, captions: list[LabelledCaption]) -> Evaluation:
    """Share flagged per category, seconds per caption, and the captions it got wrong."""
    flagged: dict[str, list[bool]] = {}
    timings: list[float] = []
    wrong: list[LabelledCaption] = []
    for caption in captions:
        started = time.perf_counter()
        hit = screen(caption.text, caption.tags)
        timings.append(time.perf_counter() - started)
        flagged.setdefault(caption.category, []).append(hit)
        if hit != caption.has_phi:
            wrong.append(caption)
    rates = {category: sum(hits) / len(hits) for category, hits in flagged.items()}
    return rates, timings, wrong


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default=BEFORE_REV, help="git revision of the 'before' screen")
    parser.add_argument("--candidates", action="store_true", help="also run the evaluated libraries")
    parser.add_argument("--show-misses", action="store_true", help="list the new screen's errors")
    parser.add_argument("--ocr", type=int, default=0, metavar="N", help="also OCR N slide-label images")
    args = parser.parse_args()

    captions = labelled_captions()
    screens: dict[str, Callable[[], Screen]] = {"before": lambda: before_screen(args.before)}
    if args.candidates:
        for name, module, build in (
            ("presidio", "presidio_analyzer", presidio_screen),
            ("scrubadub", "scrubadub", scrubadub_screen),
            ("philter", "philter_lite", philter_screen),
        ):
            if importlib.util.find_spec(module) is None:
                print(f"{name}: not installed, skipped")
            else:
                screens[name] = build
    screens["after"] = after_screen

    results: dict[str, Evaluation] = {}
    for name, build in screens.items():
        started = time.perf_counter()
        screen = build()
        load_s = time.perf_counter() - started
        screen("warm up", ())
        results[name] = evaluate(screen, captions)
        print(f"{name}: loaded in {load_s:.2f} s")

    phi_categories = list(dict.fromkeys(c.category for c in captions if c.has_phi))
    clean_categories = list(dict.fromkeys(c.category for c in captions if not c.has_phi))
    count = {cat: sum(c.category == cat for c in captions) for cat in phi_categories + clean_categories}
    names = list(results)
    width = max(len(cat) for cat in count) + 2
    header = f"{'':{width}}{'n':>4}" + "".join(f"{n:>11}" for n in names)

    print(f"\nPHI screen on {len(captions)} labelled captions (seeded), CPU: {cpu_name()}")
    print("\nRecall (share of captions with an identifier that were held or rejected)")
    print(header)
    for cat in phi_categories:
        print(f"{cat:{width}}{count[cat]:>4}" + "".join(f"{results[n][0][cat]:>11.2f}" for n in names))
    n_phi = sum(count[c] for c in phi_categories)

    def overall(name: str, categories: list[str]) -> float:
        return sum(results[name][0][c] * count[c] for c in categories) / sum(count[c] for c in categories)

    print(f"{'all':{width}}{n_phi:>4}" + "".join(f"{overall(n, phi_categories):>11.2f}" for n in names))
    print("\nFalse-positive rate (share of ordinary captions that were held or rejected)")
    print(header)
    for cat in clean_categories:
        print(f"{cat:{width}}{count[cat]:>4}" + "".join(f"{results[n][0][cat]:>11.2f}" for n in names))
    n_clean = sum(count[c] for c in clean_categories)
    print(f"{'all':{width}}{n_clean:>4}" + "".join(f"{overall(n, clean_categories):>11.2f}" for n in names))
    print("\nTime per caption (ms)")
    print(f"{'':{width}}{'':>4}" + "".join(f"{n:>11}" for n in names))
    for label, pick in (("mean", lambda t: sum(t) / len(t)), ("worst", max)):
        print(f"{label:{width}}{'':>4}" + "".join(f"{pick(results[n][1]) * 1000:>11.2f}" for n in names))
    base = sum(results["before"][1]) / len(captions)
    print(f"{'ratio to before':{width}}{'':>4}" + "".join(
        f"{sum(results[n][1]) / len(captions) / base:>11.1f}" for n in names))

    if args.show_misses:
        print("\nErrors of the new screen:")
        for caption in results["after"][2]:
            what = "missed" if caption.has_phi else "false positive"
            text = re.sub(r"\s+", " ", caption.text)
            print(f"  {what:15} [{caption.category}] {text!r} {caption.tags}")


    if args.ocr:
        ocr_table(args.ocr)


def ocr_table(n: int) -> None:
    from ingest.ocr import read_text, tesseract_path
    from ingest.phi import screen_image_text
    from tests.ingest.slide_labels import slide_labels

    if tesseract_path() is None:
        print("\nOCR: tesseract is not installed, skipped")
        return
    labels = slide_labels(n_identifier=n - n // 3, n_clean=n // 3)
    walls: list[float] = []
    by_rotation: dict[str, list[bool]] = {}
    false_positives: list[bool] = []
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for label in labels:
        started = time.perf_counter()
        flagged = bool(screen_image_text(read_text(label.image)))
        walls.append(time.perf_counter() - started)
        if label.has_phi:
            by_rotation.setdefault(f"{label.rotation} deg", []).append(flagged)
            by_rotation.setdefault(f"{label.size} px font", []).append(flagged)
        else:
            false_positives.append(flagged)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    hits = [flag for key, flags in by_rotation.items() if key.endswith("deg") for flag in flags]
    print(f"\nOCR on {len(labels)} generated slide-label photographs (900x700), CPU: {cpu_name()}")
    print(f"{'':24}{'n':>4}{'recall':>10}")
    for key, flags in sorted(by_rotation.items(), key=lambda item: (item[0].endswith("font"), item[0])):
        print(f"{key:24}{len(flags):>4}{sum(flags) / len(flags):>10.2f}")
    print(f"{'all identifiers':24}{len(hits):>4}{sum(hits) / len(hits):>10.2f}")
    share = sum(false_positives) / max(1, len(false_positives))
    print(f"{'clean labels flagged':24}{len(false_positives):>4}{share:>10.2f}")
    walls.sort()
    print(
        f"time per image: mean {sum(walls) / len(walls) * 1000:.0f} ms, worst {walls[-1] * 1000:.0f} ms "
        f"(wall); tesseract CPU {cpu / len(labels) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
