"""The PHI screen on the labelled caption set (tests/ingest/phi_captions.py): recall and false-positive
thresholds overall and per category, plus the behaviours the set relies on (normalisation, links,
tags and hashtags, offsets into the original text).

The thresholds sit just under what bench/phi_bench.py measured (recall 0.995, false positives 0.00
on 200 + 200 captions), so a regression in any one category fails here.
"""

from __future__ import annotations

import pytest

from ingest.phi import PhiKind, normalise, screen_caption, screen_image_text, screen_post, summarise
from ingest.phi_names import name_lexicon
from tests.ingest.phi_captions import CLEAN_CATEGORIES, PHI_CATEGORIES, labelled_captions

K = PhiKind
CAPTIONS = labelled_captions()


def _flagged(category: str) -> list[bool]:
    return [bool(screen_post(c.text, c.tags)) for c in CAPTIONS if c.category == category]


def test_the_set_is_large_and_balanced() -> None:
    with_phi = [c for c in CAPTIONS if c.has_phi]
    assert len(CAPTIONS) >= 300
    assert len(with_phi) * 2 == len(CAPTIONS)
    assert len({c.text for c in CAPTIONS}) > 0.95 * len(CAPTIONS)


def test_overall_recall_and_false_positive_rate() -> None:
    with_phi = [c for c in CAPTIONS if c.has_phi]
    clean = [c for c in CAPTIONS if not c.has_phi]
    recall = sum(bool(screen_post(c.text, c.tags)) for c in with_phi) / len(with_phi)
    false_positives = sum(bool(screen_post(c.text, c.tags)) for c in clean) / len(clean)
    assert recall >= 0.97
    assert false_positives <= 0.02


@pytest.mark.parametrize("category", list(PHI_CATEGORIES))
def test_recall_per_category(category: str) -> None:
    flagged = _flagged(category)
    assert sum(flagged) / len(flagged) >= 0.9


@pytest.mark.parametrize("category", list(CLEAN_CATEGORIES))
def test_false_positives_per_category(category: str) -> None:
    flagged = _flagged(category)
    assert sum(flagged) / len(flagged) <= 0.05


def test_lexicon_comes_from_philter() -> None:
    lexicon = name_lexicon()
    assert lexicon is not None
    assert len(lexicon.first_names) > 50_000 and len(lexicon.last_names) > 100_000
    assert lexicon.is_first("John") and lexicon.is_last("Okafor") and lexicon.is_common_word("Mark")


# --- normalisation --------------------------------------------------------------------------------


def test_normalise_maps_back_to_the_original() -> None:
    text = "MRN 1\u200b2\u200b3\u00ad4 ５６"
    normal, origin = normalise(text)
    assert normal == "MRN 1234 56"
    assert [text[origin[i]] for i in range(len(normal))][-2:] == ["５", "６"]
    assert origin[-1] == len(text)


@pytest.mark.parametrize(
    "caption",
    [
        "MRN 1\u200b2\u200b3\u200b4\u200b5\u200b6\u200b7\u200b8, colon",
        "call 415\u2060-555\u2060-0132",
        "DOB ０３/０４/１９６１",
        "ref 1\u00ad2\u00ad3\u00ad4\u00ad5\u00ad6\u00ad7",
        "jane\u200b@\u200bhospital.org",
    ],
)
def test_invisible_and_full_width_characters_do_not_hide_identifiers(caption: str) -> None:
    findings = screen_caption(caption)
    assert findings
    for finding in findings:  # offsets point into the original, invisible characters included
        assert caption[finding.start : finding.end] == finding.text


# --- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "caption",
    [
        "slide https://pacs.example.org/cases/2021-03-12/slide3.svs",
        "https://viewer.example.net/view?study=20210312&slide=2",
        "https://wsi.example.edu/2019/04/03/colon.png",
        "https://example.com/view?mrn=12345678",
        "https://example.com/patient/4417362/slides",
        "https://example.com/report?dob=03%2F04%2F1961",
    ],
)
def test_dates_and_patient_ids_inside_links_are_flagged(caption: str) -> None:
    kinds = {f.kind for f in screen_caption(caption)}
    assert kinds & {K.DATE, K.RECORD_NUMBER}, kinds


@pytest.mark.parametrize(
    "caption",
    [
        "see https://doi.org/10.1097/PAS.0000000000001234",
        "https://pubmed.ncbi.nlm.nih.gov/31234567/",
        "https://discord.com/channels/123456789012345678/234567890123456789/345678901234567890",
        "https://www.example.org/atlas/colon/tubular-adenoma?page=2",
    ],
)
def test_reference_links_are_not_flagged(caption: str) -> None:
    assert screen_caption(caption) == []


# --- tags and hashtags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "kind"),
    [
        (("gi", "MRN 12345678"), K.RECORD_NUMBER),
        (("John Smith",), K.NAME),
        (("jane_doe",), K.NAME),
        (("Smith-John",), K.NAME),
        (("dob 03/04/1961",), K.DATE_OF_BIRTH),
    ],
)
def test_tags_are_screened(tags: tuple[str, ...], kind: PhiKind) -> None:
    findings = screen_post("Tubular adenoma", tags)
    assert kind in {f.kind for f in findings}
    for finding in findings:
        assert finding.where == "tag" and finding.text in tags


@pytest.mark.parametrize("caption", ["Colon biopsy #gipath #JohnSmith", "GIST #MRN12345678", "#S2112345 H&E"])
def test_hashtags_are_read_as_words(caption: str) -> None:
    findings = screen_caption(caption)
    assert findings and all(f.text.startswith("#") for f in findings)


def test_ordinary_tags_and_hashtags_pass() -> None:
    tags = ("gi", "soft tissue", "teaching")
    assert screen_post("Tubular adenoma #gipath #pathtwitter #USCAP2025", tags) == []


# --- image text and summaries ---------------------------------------------------------------------


def test_image_text_findings_are_low_confidence() -> None:
    findings = screen_image_text("SMITH, JOHN\nMRN 12345678\nS21-12345 A1")
    assert {f.kind for f in findings} == {K.NAME, K.RECORD_NUMBER}
    assert all(f.confidence == "low" and f.where == "image text" for f in findings)


def test_summary_names_kinds_never_text() -> None:
    findings = screen_caption("John Smith, 54M, MRN 12345678")
    summary = summarise(findings)
    assert summary == "name, record number"
    assert "Smith" not in summary and "1234" not in summary
