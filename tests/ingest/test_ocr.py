"""ingest.ocr and the image-text stage of the pipeline: generated slide labels are read and their
identifiers held, micrographs without labels cost no OCR, and a missing or slow engine holds the post
(or is skipped, if configured) with a clear log line and no stack trace.

Needs the `tesseract` binary (Debian tesseract-ocr; install.sh, .ci/run and the Dockerfile install
it): skipped where it is missing, except under CI, where that is a failure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.consent_ledger import ConsentScope
from ingest.ocr import OcrSettings, OcrUnavailable, prepare, read_text, tesseract_path
from ingest.phi import PhiKind, screen_image_text
from ingest.pipeline import Outcome, PostImage
from plipbot.composition import Container
from tests import imagegen
from tests.embedded_settings import embedded_settings
from tests.ingest.slide_labels import he_field, render, slide_labels

if tesseract_path() is None:
    if os.environ.get("CI"):
        raise RuntimeError("tesseract is not installed: .ci/run installs tesseract-ocr")
    pytest.skip("tesseract is not installed (apt-get install tesseract-ocr)", allow_module_level=True)


def test_identifiers_on_slide_labels_are_found_and_clean_labels_pass() -> None:
    labels = slide_labels(n_identifier=6, n_clean=3)
    verdicts = [(label.has_phi, bool(screen_image_text(read_text(label.image)))) for label in labels]
    found = sum(flagged for has_phi, flagged in verdicts if has_phi)
    false_alarms = sum(flagged for has_phi, flagged in verdicts if not has_phi)
    assert found >= 5, verdicts
    assert false_alarms == 0, verdicts


def test_a_sideways_label_is_read() -> None:
    image = render(("SMITH, JOHN", "MRN 12345678"), "DejaVuSans.ttf", 24, 90, seed=3)
    kinds = {f.kind for f in screen_image_text(read_text(image))}
    assert kinds >= {PhiKind.RECORD_NUMBER}


@pytest.mark.parametrize(
    "image",
    [
        imagegen.noise((256, 256)),
        imagegen.texture((256, 256)),
        imagegen.solid(size=(300, 200)),
        he_field((600, 400), seed=1),
    ],
    ids=["noise", "texture", "solid", "h&e"],
)
def test_images_without_writing_are_not_sent_to_tesseract(image: object) -> None:
    assert prepare(image, 1400) is None  # type: ignore[arg-type]
    assert read_text(image) == ""  # type: ignore[arg-type]


def test_missing_engine_and_time_limit_raise_a_clear_error() -> None:
    label = render(("MRN 12345678",), "DejaVuSans.ttf", 24, 0, seed=1)
    with pytest.raises(OcrUnavailable, match="not installed"):
        read_text(label, OcrSettings(binary="no-such-tesseract"))
    with pytest.raises(OcrUnavailable, match="longer than"):
        read_text(label, OcrSettings(timeout_s=0.001))


# --- in the pipeline ----------------------------------------------------------------------------

GUILD = 501


@pytest.fixture
def container(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Container]:
    c = Container(embedded_settings(tiny_checkpoint, tmp_path / "data"))
    yield c
    c.close()


def _post(image: bytes, caption: str = "", tags: tuple[str, ...] = (), message: int = 1) -> PostImage:
    return PostImage(
        point_id=f"00000000-0000-4000-8000-{message:012d}",
        guild_id=GUILD,
        image=image,
        created_at=datetime.now(UTC),
        caption=caption,
        tags=tags,
        scope=ConsentScope.SERVER,
        name=f"post{message}.png",
    )


def test_pipeline_holds_labels_and_rejects_identifiers_in_tags(container: Container) -> None:
    pipeline = container.ingest_pipeline
    label = imagegen.encode(render(("GARCIA, MARIA", "DOB 03/04/1961"), "DejaVuSans.ttf", 24, 0, seed=2))
    plain = imagegen.encode(he_field((400, 300), seed=5))
    held, tagged, fine = pipeline.ingest(
        [
            _post(label, "Tubular adenoma", message=1),
            _post(plain, "Tubular adenoma", ("gi", "MRN 12345678"), message=2),
            _post(plain, "Tubular adenoma #gipath", ("gi",), message=3),
        ]
    )
    assert held.outcome is Outcome.HELD and "text on the image" in held.reason
    assert "GARCIA" not in held.reason and "1961" not in held.reason  # kinds, never the identifier
    assert tagged.reason == "tags contain a likely identifier (record number)"
    assert "12345678" not in tagged.reason
    assert fine.outcome is Outcome.INGESTED
    assert container.case_store.count() == 1


@pytest.mark.parametrize(("policy", "outcome"), [("hold", Outcome.HELD), ("skip", Outcome.INGESTED)])
def test_missing_engine_holds_or_skips(
    container: Container, caplog: pytest.LogCaptureFixture, policy: str, outcome: Outcome
) -> None:
    pipeline = container.ingest_pipeline
    pipeline.settings = pipeline.settings.model_copy(update={"ocr_unavailable": policy})
    pipeline.ocr_settings = replace(pipeline.ocr_settings, binary="no-such-tesseract")
    label = imagegen.encode(render(("Ki-67",), "DejaVuSans.ttf", 24, 0, seed=4))
    with caplog.at_level(logging.WARNING, logger="ingest.pipeline"):
        [result] = pipeline.ingest([_post(label, "Ki-67 index", message=9)])
    assert result.outcome is outcome
    assert any("not installed" in record.getMessage() for record in caplog.records)
