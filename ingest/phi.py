"""Flagging likely patient identifiers in captions before a post enters the corpus.

This is a screen, not a de-identifier: it finds the identifiers people actually type into case
captions (dates of birth, record and accession numbers, phone numbers, e-mail addresses, SSNs,
NHS numbers, names after "patient" or "Mrs.", ages over 89) so a post can be held for review or its
poster asked to edit it. It errs towards quiet on ordinary pathology text, because a screen that
fires on "Ki-67 30%", "pT2N1M0" or "Gleason 3+4=7" trains people to ignore it; the tests hold a
table of such negatives. Names are hard to tell from eponyms and stains without a model, so name
findings are only the cheap, cued kind and are marked low confidence.

Findings carry character offsets into the original text, so a caller can highlight or redact them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Confidence = Literal["high", "low"]


class PhiKind(StrEnum):
    """What a finding looks like; the values are stable strings for logs and review queues."""

    DATE_OF_BIRTH = "date_of_birth"
    DATE = "date"
    RECORD_NUMBER = "record_number"
    PHONE = "phone"
    EMAIL = "email"
    SSN = "ssn"
    NHS_NUMBER = "nhs_number"
    NAME = "name"
    AGE_OVER_89 = "age_over_89"


@dataclass(frozen=True)
class PhiFinding:
    """One likely identifier: where it is in the caption and why it was flagged."""

    kind: PhiKind
    start: int
    end: int
    text: str
    reason: str
    confidence: Confidence = "high"


# --- building blocks -------------------------------------------------------------------------

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR4 = r"(?:1[89]\d\d|20\d\d)"

# Dates with a day, a month and a year: the HIPAA identifier. A year alone ("in 2019") is not one.
_DATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # 03/04/1961, 3-4-1961, 03.04.61 (day and month in either order; "10-12-15" is a range, not a date)
    re.compile(r"(?<![\w/.-])(?:\d{1,2}([/.-])\d{1,2}\1\d{4}|\d{1,2}([/.])\d{1,2}\2\d{2})(?![\w/]|[.-]\d)"),
    # 1961-04-03, 1961/4/3
    re.compile(rf"(?<![\w/.-]){_YEAR4}([/.-])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])(?![\w/]|[.-]\d)"),
    # 3 April 1961, 3rd of April, 1961
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR4}\b", re.IGNORECASE),
    # April 3, 1961 / April 3rd 1961
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR4}\b", re.IGNORECASE),
)
# What may follow a birth cue: any of the full dates above, month + year, or a bare year.
_BIRTH_VALUE = (
    rf"(?:{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR4}|{_MONTH}\s+{_DAY},?\s+{_YEAR4}|{_MONTH},?\s+{_YEAR4}"
    rf"|\d{{1,4}}[/.-]\d{{1,2}}(?:[/.-]\d{{2,4}})?|{_YEAR4})"
)
_DOB_CUE = re.compile(
    rf"(?:\bDOB\b|\bD\.O\.B\b\.?|\bdate\s+of\s+birth\b|\bbirth\s*date\b)\s*[:#=-]?\s*(?:{_BIRTH_VALUE})?"
    rf"|\bborn\s+(?:on\s+|in\s+)?{_BIRTH_VALUE}",
    re.IGNORECASE,
)

_RECORD_CUE = re.compile(
    r"\b(?:MRN|MR\s*#|MR\s*no\.?|UR\s*no\.?|URN|medical\s+record(?:\s+(?:number|no\.?))?"
    r"|hospital\s+(?:number|no\.?)|patient\s+(?:id|number|no\.?)|pt\.?\s+(?:id|no\.?)"
    r"|accession(?:\s+(?:number|no\.?))?|acc\.?\s*(?:no\.?|\#)|specimen\s+(?:number|no\.?|\#)"
    r"|lab\s+(?:number|no\.?)|(?:surgical\s+)?path(?:ology)?\s+(?:number|no\.?|\#)"
    r"|block\s+(?:number|no\.?))"
    r"\s*[:#=]?\s*(?:[A-Z]{1,4}[\s-]?)?\d[\d\s/-]{2,}\d",
    re.IGNORECASE,
)
# "case no 123456": only with four or more digits, since "case 3" is how teaching cases are numbered.
_CASE_CUE = re.compile(
    r"\bcase\s*(?:no\.?|number|\#)\s*[:#]?\s*(?:[A-Z]{1,3}-?)?\d{2,}[\d/-]*\d{2,}", re.IGNORECASE
)
# Surgical pathology accession numbers: S21-12345, SP-21-1234, S2021-012345, CS21-123.
_ACCESSION = re.compile(r"\b[A-Z]{1,3}-?(?:\d{2}|\d{4})-\d{3,7}\b")
# A bare run of 7+ digits in a caption is almost always a record, accession or phone number.
_LONG_DIGITS = re.compile(r"(?<![\d.,])\d{7,}(?![\d.,]\d)(?!\s*(?:bp|kb|cells|nm|µm|um)\b)")

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}\b")
_SSN_CUE = re.compile(r"\b(?:SSN|social\s+security(?:\s+(?:number|no\.?))?)\s*[:#]?\s*\d{9}\b", re.IGNORECASE)
_NHS = re.compile(r"(?<![\d-])(\d{3})([ -]?)(\d{3})\2(\d{4})(?![\d-])")

_PHONE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # +44 20 7946 0958, +1 (415) 555-0132, +33 1 23 45 67 89
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,6}(?!\w)"),
    # (415) 555-0132, 415-555-0132, 415.555.0132, 1-800-555-0132
    re.compile(r"(?<![\w(])(?:1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w.-]?\d)"),
    # UK and European national numbers: 020 7946 0958, 07700 900123
    re.compile(r"(?<![\w+])0[1-9]\d{1,3}[\s-]?\d{3,4}[\s-]?\d{3,4}(?![\w.-]?\d)"),
)
_PHONE_CUE = re.compile(r"\b(?:tel|phone|mobile|call)\.?\s*[:#]?\s*(\+?[\d][\d\s().-]{6,}\d)", re.IGNORECASE)

_AGE_OVER_89 = re.compile(
    r"\b(?:9\d|1[0-4]\d)[\s-]*(?:years?|yrs?|y)[\s-]*(?:old|/o)\b|\b(?:9\d|1[0-4]\d)\s*(?:yo|y/o|y\.o\.)(?!\w)",
    re.IGNORECASE,
)

# Smith, O'Brien, McDonald, Smith-Jones; never "Ki" of Ki-67 or "HER" of HER2.
_NAME_WORD = r"[A-Z](?:'[A-Z])?[a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z](?:'[A-Z])?[a-z]+)?(?![\w-])"
_NAME_TITLE = re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx)\.?\s+((?:[A-Z]\.\s*)?{_NAME_WORD}(?:\s+{_NAME_WORD})?)")
_NAME_PATIENT = re.compile(
    rf"\b(?:[Pp]atient|[Pp]t\.?|[Nn]ame)\s*[:,]?\s+((?:[A-Z]\.\s*)?{_NAME_WORD}(?:\s+{_NAME_WORD})?)"
)
# Capitalised words that follow "patient" in ordinary sentences and are not names.
_NOT_NAMES = frozenset(
    """
    A An The This That These Those His Her Their Is Was Were Has Had Have With Without Who Which
    Presented Presents Presenting History Age Aged Consent Information Education Notes Note Case
    Male Female Man Woman Boy Girl Child Infant Adult Here There In On At From For To Of And Or But
    Underwent Developed Received Reported Showed Shows Had Died Diagnosed Admitted Referred Seen
    Biopsy Specimen Sample Material Report Slide Slides Image Images Figure Fig Table Group Cohort
    Details Data Record Records Safety Privacy Identifier Identifiers Positive Negative Status
    """.split()  # noqa: SIM905 (a word list reads better as text)
)

# Spans where digits are references, not patients: links, DOIs, PubMed and trial identifiers.
_REFERENCE_SPANS = re.compile(
    r"(?:https?://|www\.)\S+|<[#@!&]*\d+>|\b10\.\d{4,9}/\S+"
    r"|\b(?:PMID|PMCID|PMC|DOI|ISBN|ISSN|NCT|ORCID|arXiv)\s*:?\s*[\w./-]+",
    re.IGNORECASE,
)

# Tie-break between overlapping findings of equal length: the most specific kind wins.
_PRIORITY: dict[PhiKind, int] = {
    PhiKind.EMAIL: 0,
    PhiKind.SSN: 1,
    PhiKind.NHS_NUMBER: 2,
    PhiKind.DATE_OF_BIRTH: 3,
    PhiKind.RECORD_NUMBER: 4,
    PhiKind.PHONE: 5,
    PhiKind.DATE: 6,
    PhiKind.AGE_OVER_89: 7,
    PhiKind.NAME: 8,
}


# --- public API --------------------------------------------------------------------------------


def screen_caption(text: str) -> list[PhiFinding]:
    """Likely identifiers in `text`, in order of position, without overlaps.

    An empty list means nothing was recognised, not that the caption is safe: free-text names,
    places and rare identifiers get through (see the module docstring).
    """
    references = [m.span() for m in _REFERENCE_SPANS.finditer(text)]
    candidates = [
        finding
        for finding in _all_candidates(text)
        if not any(start <= finding.start and finding.end <= end for start, end in references)
    ]
    return _without_overlaps(candidates)


def nhs_number_is_valid(digits: str) -> bool:
    """The NHS number check digit (modulus 11, weights 10..2); 10 digits, separators removed."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


# --- detectors ---------------------------------------------------------------------------------


def _all_candidates(text: str) -> Iterator[PhiFinding]:
    yield from _matches(_EMAIL, text, PhiKind.EMAIL, "an e-mail address")
    yield from _matches(_SSN, text, PhiKind.SSN, "formatted like a US Social Security number")
    yield from _matches(_SSN_CUE, text, PhiKind.SSN, "a US Social Security number")
    yield from _nhs_numbers(text)
    yield from _matches(_DOB_CUE, text, PhiKind.DATE_OF_BIRTH, "a date of birth")
    for pattern in _DATE_PATTERNS:
        yield from _dates(pattern, text)
    yield from _matches(_RECORD_CUE, text, PhiKind.RECORD_NUMBER, "a medical record or accession number")
    yield from _matches(_CASE_CUE, text, PhiKind.RECORD_NUMBER, "a case number with many digits")
    yield from _matches(
        _ACCESSION, text, PhiKind.RECORD_NUMBER, "formatted like a pathology accession number"
    )
    yield from _matches(
        _LONG_DIGITS, text, PhiKind.RECORD_NUMBER, "a long number (record, accession or phone)"
    )
    for pattern in _PHONE_PATTERNS:
        yield from _phones(pattern, text)
    yield from _phones(_PHONE_CUE, text, group=1)
    yield from _matches(_AGE_OVER_89, text, PhiKind.AGE_OVER_89, "an age over 89", "low")
    yield from _names(text)


def _matches(
    pattern: re.Pattern[str], text: str, kind: PhiKind, reason: str, confidence: Confidence = "high"
) -> Iterator[PhiFinding]:
    for match in pattern.finditer(text):
        start, end = match.span()
        yield PhiFinding(kind, start, end, text[start:end].rstrip(), reason, confidence)


def _dates(pattern: re.Pattern[str], text: str) -> Iterator[PhiFinding]:
    for finding in _matches(
        pattern, text, PhiKind.DATE, "a full date (birth, procedure and death dates identify)"
    ):
        numbers = [int(part) for part in re.findall(r"\d+", finding.text)]
        if len(numbers) == 3 and re.fullmatch(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}", finding.text):
            first, second, _year = numbers
            if not (1 <= first <= 31 and 1 <= second <= 31 and min(first, second) <= 12):
                continue  # 45/60/2020 is a ratio or a score, not a date
        yield finding


def _nhs_numbers(text: str) -> Iterator[PhiFinding]:
    for match in _NHS.finditer(text):
        digits = match.group(1) + match.group(3) + match.group(4)
        if nhs_number_is_valid(digits):
            yield PhiFinding(
                PhiKind.NHS_NUMBER, match.start(), match.end(), match.group(0), "a valid UK NHS number"
            )


def _phones(pattern: re.Pattern[str], text: str, group: int = 0) -> Iterator[PhiFinding]:
    for match in pattern.finditer(text):
        start, end = match.span(group)
        number = text[start:end].rstrip(" .-(")
        digits = sum(char.isdigit() for char in number)
        if 8 <= digits <= 15:
            yield PhiFinding(PhiKind.PHONE, start, start + len(number), number, "a phone number")


def _names(text: str) -> Iterator[PhiFinding]:
    for pattern, cue in ((_NAME_TITLE, "a title"), (_NAME_PATIENT, '"patient" or "name"')):
        for match in pattern.finditer(text):
            words = [word for word in re.split(r"\s+", match.group(1)) if word and not word.endswith(".")]
            if not words or words[0] in _NOT_NAMES:
                continue
            if len(words) > 1 and words[1] in _NOT_NAMES:
                words = words[:1]
            start = match.start(1)
            end = text.index(words[-1], start) + len(words[-1])
            yield PhiFinding(PhiKind.NAME, start, end, text[start:end], f"a possible name after {cue}", "low")


def _without_overlaps(candidates: Iterable[PhiFinding]) -> list[PhiFinding]:
    """Where findings overlap, keep the longest (it carries its cue: "MRN 123..." over "123..."),
    and among equally long ones the most specific kind."""
    ranked = sorted(candidates, key=lambda f: (-(f.end - f.start), _PRIORITY[f.kind], f.start))
    kept: list[PhiFinding] = []  # sorted by start, pairwise disjoint
    for finding in ranked:
        index = bisect.bisect_left(kept, finding.start, key=lambda f: f.start)
        before_is_clear = index == 0 or kept[index - 1].end <= finding.start
        after_is_clear = index == len(kept) or finding.end <= kept[index].start
        if before_is_clear and after_is_clear:
            kept.insert(index, finding)
    return kept
