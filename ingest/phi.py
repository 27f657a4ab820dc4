"""Flagging likely patient identifiers in a post (caption, tags, text burned into the image) before
it enters the corpus.

This is a screen, not a de-identifier: it finds the identifiers people actually type into case
captions (names, with or without a cue word; dates of birth and other full dates; record and
accession numbers; phone numbers; e-mail addresses; postal addresses; SSNs and NHS numbers; ages
over 89; hospital names) so a post can be held for review or its poster asked to edit it. It errs
towards quiet on ordinary pathology text, because a screen that fires on "Ki-67 30%", "pT2N1M0",
"Gleason 3+4=7" or "Hodgkin lymphoma" trains people to ignore it.

What it does, in order:

* Unicode is normalised first (NFKC, so full-width digits are digits; format characters such as
  zero-width spaces and soft hyphens are dropped, so "1\u200b2\u200b3..." is a number). Findings
  still carry offsets into the original text, so a caller can highlight or redact them.
* Links are inspected, not skipped: a full date or a patient, record or birth-date parameter in a
  link's path or query is an identifier; literature and Discord links are references.
* Hashtags and tags are screened as words ("#JohnSmith" as "John Smith", "#MRN12345678" as
  "MRN 12345678").
* Names without a cue word come from UCSF Philter's clinical name lexicons (`ingest.phi_names`).

Each finding is "high" confidence (the post is rejected and its poster asked to edit it) or "low"
(held for a moderator): names, places, month-and-year dates and image text are low, because they
are where a pattern is most often wrong. bench/phi_bench.py measures recall and false positives per
category on the labelled set in tests/ingest/phi_captions.py, before and after, and against the
libraries that were considered (presidio-analyzer, scrubadub, philter-lite's own pipeline).
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from ingest.phi_names import find_names

Confidence = Literal["high", "low"]
Where = Literal["caption", "tag", "image text"]


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
    ADDRESS = "address"
    INSTITUTION = "institution"


@dataclass(frozen=True)
class PhiFinding:
    """One likely identifier: where it is in the caption and why it was flagged."""

    kind: PhiKind
    start: int
    end: int
    text: str
    reason: str
    confidence: Confidence = "high"
    where: Where = "caption"
    """The caption, a tag (offsets into that tag), or text read from the image (offsets into it)."""


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
    r"|block\s+(?:number|no\.?)|med(?:ical)?\.?\s*rec(?:ord)?\.?\s*(?:\#|no\.?|number)?)"
    r"\s*[:#=]?\s*(?:[A-Z]{1,4}[\s-]?)?\d[\d\s/-]{2,}\d",
    re.IGNORECASE,
)
# "MRN: ABC-XY": the strongest cues followed by any code, digits or not.
_RECORD_CODE = re.compile(
    r"\b(?:MRN|MR\s*\#|URN|NHS\s+(?:number|no\.?)|hospital\s+(?:number|no\.?)|patient\s+id)"
    r"\s*[:#=]?\s*[A-Z0-9][A-Z0-9]*(?:-[A-Z0-9]+)*\b(?<=[A-Z0-9]{2})"
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

_AGE_SPELLED = re.compile(
    r"\b(?:ninety|one[\s-]hundred(?:[\s-]and)?)(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine|ten))?"
    r"[\s-]*(?:years?[\s-]*old|year-old|yo)\b",
    re.IGNORECASE,
)

# Month and year ("last seen in April 2019"): an element of a date under HIPAA, but also how
# guidelines and meetings are named, so low confidence. "May" only with a year after it.
_MONTH_YEAR = re.compile(rf"\b{_MONTH}\s*,?\s+{_YEAR4}\b(?!\s*(?:edition|update|guidelines?|classification))",
                         re.IGNORECASE)
# Day-month-year written with a month name and hyphens or nothing between: 12-Mar-2021, 12MAR2021.
_DATE_COMPACT = re.compile(rf"\b{_DAY}[-/ ]?{_MONTH}[-/ ]?(?:{_YEAR4}|\d{{2}})\b", re.IGNORECASE)
# "on 3/4": a day and month with a date cue and nothing count-like after it ("on 3/4 cores" is a ratio).
_DAY_MONTH_CUED = re.compile(
    r"\b(?:on|dated|since|until|seen|taken|collected|received|biops(?:y|ied)|resected|excised)\s+"
    r"((?:0?[1-9]|[12]\d|3[01])[/.](?:0?[1-9]|1[0-2]))(?![/.]?\d)"
    r"(?=\s*(?:$|[,;.)]|\s(?:and|at|in|for|with|then|by|was|were|when|after|before|resection|surgery)\b))",
    re.IGNORECASE,
)

_STREET_TYPES = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Av|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace"
    r"|Close|Crescent|Square|Sq|Highway|Hwy|Parkway|Pkwy|Circle|Cir|Row|Walk|Gardens|Grove|Hill|Mews"
    r"|Trail|Plaza)"
)
# 12 Baker Street; 4521 N. Oak Ave; 3354 Cedar Court; 7 King's Road.
_STREET = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?,?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z'’]+\.?\s+){{1,3}}{_STREET_TYPES}\b\.?"
)
_US_STATE = (
    r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ"
    r"|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC)"
)
# Springfield, IL 62704; Austin TX 78701-1234; "Columbus, OH" after a street.
_CITY_STATE_ZIP = re.compile(rf"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)?,?\s+{_US_STATE}\s+\d{{5}}(?:-\d{{4}})?\b")
_CITY_STATE = re.compile(rf"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)?,\s+{_US_STATE}\b(?![\w-])")
# UK postcodes: NW1 6XE, LS1 4AP, G12 8QQ, CF14 4XW (upper case, the inward part digit-letter-letter).
_UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[ABD-HJLNP-UW-Z]{2}\b")
_PO_BOX = re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d+\b", re.IGNORECASE)
_UNIT = re.compile(r"\b(?:Apt|Apartment|Flat|Unit|Suite)\.?\s*#?\s*\d+[A-Z]?\b")
_ADDRESS_CUE = re.compile(
    r"\b(?:lives\s+at|living\s+at|resides\s+at|address(?:\s+is)?|home)\s*[:=-]?\s+\d{1,5}\s+\w[^,;\n]{2,40}",
    re.IGNORECASE,
)
_INSTITUTION = re.compile(
    r"\b(?:[A-Z][a-z'’.]+\s+){1,4}(?:General\s+|Memorial\s+|Children['’]s\s+|University\s+)?"
    r"(?:Hospital|Infirmary|Medical\s+Cent(?:er|re)|Health\s+System|Hospice|Clinic)\b"
)

# E-mail addresses written to dodge filters: "jane.doe [at] gmail.com", "jdoe at gmail dot com".
_EMAIL_OBFUSCATED = re.compile(
    r"(?<![\w.+-])[\w.+-]+\s*(?:\[at\]|\(at\)|\{at\})\s*[\w-]+(?:\s*(?:\.|\[dot\]|\(dot\))\s*[\w-]+)+"
    r"|(?<![\w.+-])[\w.+-]+\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)+",
    re.IGNORECASE,
)
# Initials next to an age and sex, or after a cue: "J.S. 45M", "pt J.S.".
_INITIALS = re.compile(
    r"\b[A-Z]\.\s?[A-Z]\.(?:\s?[A-Z]\.)?(?=,?\s*\d{1,3}\s*(?:[MF]\b|yo\b|y/o|-?\s*years?[-\s]old))"
    r"|(?<=\bpt\s)[A-Z]\.\s?[A-Z]\.|(?<=\bpatient\s)[A-Z]\.\s?[A-Z]\."
)
# Digits written one by one with spaces ("1 2 3 4 5 6 7 8"), after invisible separators are gone.
_SPACED_DIGITS = re.compile(r"(?<![\d.,])\d(?:[ .-]\d){6,}(?![\d])")

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

# Spans where digits are references, not patients: links, Discord mentions, DOIs, PubMed and trial
# identifiers. Links are then inspected on their own (`_link_findings`).
_REFERENCE_SPANS = re.compile(
    r"(?:https?://|www\.)\S+|<[#@!&]*\d+>|\b10\.\d{4,9}/\S+"
    r"|\b(?:PMID|PMCID|PMC|DOI|ISBN|ISSN|NCT|ORCID|arXiv)\s*:?\s*[\w./-]+",
    re.IGNORECASE,
)
_LINK = re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
# Hosts whose links are literature or chat, never a patient's record.
_REFERENCE_HOSTS = re.compile(
    r"(?:^|\.)(?:doi\.org|ncbi\.nlm\.nih\.gov|pubmed\.gov|nih\.gov|clinicaltrials\.gov|who\.int"
    r"|discord\.com|discordapp\.com|discordapp\.net|discord\.gg|cap\.org|wikipedia\.org|nature\.com"
    r"|sciencedirect\.com|springer\.com|wiley\.com|lww\.com|journals\.lww\.com|nejm\.org|bmj\.com"
    r"|thelancet\.com|pathologyoutlines\.com|webpathology\.com|arxiv\.org|biorxiv\.org|medrxiv\.org)$",
    re.IGNORECASE,
)
# A full date inside a link: 2021-03-12, 2021/03/12, 20210312, 12.03.2021, 03-12-2021.
_LINK_DATE = re.compile(
    r"(?<!\d)(?:(?:19|20)\d\d[-_/.]?(?:0[1-9]|1[0-2])[-_/.]?(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-_/.](?:0?[1-9]|1[0-2])[-_/.](?:19|20)\d\d"
    r"|(?:0?[1-9]|1[0-2])[-_/.](?:0?[1-9]|[12]\d|3[01])[-_/.](?:19|20)\d\d)(?!\d)"
)
# Query keys and path segments that name a patient's record.
_LINK_PATIENT_KEY = re.compile(
    r"^(?:mrn|mr|urn|pid|patient(?:_?id)?|pt(?:_?id)?|dob|birth_?date|name|first_?name|last_?name|surname"
    r"|acc|accession|ssn|nhs|record|chart|encounter|visit_?id|case_?id)$",
    re.IGNORECASE,
)
_OCR_DOLLAR = re.compile(r"\$(?=\d)")
_HASHTAG = re.compile(r"(?<![\w&])#(\w{2,})")

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
    PhiKind.ADDRESS: 8,
    PhiKind.NAME: 9,
    PhiKind.INSTITUTION: 10,
}


# --- public API --------------------------------------------------------------------------------


def screen_caption(text: str) -> list[PhiFinding]:
    """Likely identifiers in a caption, in order of position, without overlaps; offsets into `text`.

    Hashtags in it are screened as words too. An empty list means nothing was recognised, not that
    the caption is safe (see the module docstring).
    """
    return _screen(text, "caption")


def screen_post(caption: str, tags: Sequence[str] = ()) -> list[PhiFinding]:
    """Likely identifiers in a post's caption and its tags (each tag's findings point into the tag)."""
    findings = screen_caption(caption)
    for tag in tags:
        findings.extend(_screen(tag, "tag"))
    return findings


def screen_image_text(text: str) -> list[PhiFinding]:
    """Likely identifiers in text read from an image (slide labels, requisition forms), all low
    confidence: OCR misreads, so a person looks before anything is rejected."""
    read = _OCR_DOLLAR.sub("S", text)  # the commonest misreading of a label: "$21-12345" for "S21-12345"
    return [
        replace(finding, confidence="low", text=text[finding.start : finding.end])
        for finding in _screen(read, "image text")
    ]


def summarise(findings: Iterable[PhiFinding]) -> str:
    """The kinds found, for a log line or a message: "date of birth, name". Never the text itself."""
    return ", ".join(sorted({finding.kind.replace("_", " ") for finding in findings}))


def normalise(text: str) -> tuple[str, list[int]]:
    """`text` in NFKC form with format characters (zero-width spaces and joiners, soft hyphens,
    direction marks) removed, and for each character of the result the index of the character of
    `text` it came from (plus one entry past the end), so findings map back to the original."""
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if unicodedata.category(char) == "Cf":
            continue
        for normal in unicodedata.normalize("NFKC", char):
            if unicodedata.category(normal) != "Cf":
                chars.append(normal)
                origin.append(index)
    origin.append(len(text))
    return "".join(chars), origin


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


def _screen(text: str, where: Where) -> list[PhiFinding]:
    normal, origin = normalise(text)
    candidates = _plain_findings(normal)
    # Hashtags (and whole tags) are also read as words: "#JohnSmith" as "John Smith". What is found
    # in the words marks the whole hashtag, since the split text has other offsets.
    spans = [(0, len(normal), normal)] if where == "tag" else []
    spans += [(m.start(), m.end(), m.group(1)) for m in _HASHTAG.finditer(normal)]
    for start, end, word in spans:
        words = _split_words(word)
        if words != word:
            for finding in _plain_findings(words):
                candidates.append(replace(finding, start=start, end=end, text=normal[start:end]))
    kept = _without_overlaps(candidates)
    return [_in_original(finding, text, origin, where) for finding in kept]


def _plain_findings(text: str) -> list[PhiFinding]:
    references = [m.span() for m in _REFERENCE_SPANS.finditer(text)]
    found = [
        finding
        for finding in _all_candidates(text)
        if not any(start <= finding.start and finding.end <= end for start, end in references)
    ]
    found.extend(_link_findings(text))
    return found


def _in_original(finding: PhiFinding, text: str, origin: list[int], where: Where) -> PhiFinding:
    """The finding with offsets and text of the original, un-normalised string."""
    start = origin[finding.start]
    end = origin[finding.end - 1] + 1 if finding.end > finding.start else start
    return replace(finding, start=start, end=end, text=text[start:end], where=where)


def _split_words(word: str) -> str:
    """"JohnSmith" -> "John Smith", "MRN12345678" -> "MRN 12345678", "jane_doe" -> "Jane Doe",
    "Smith-John" -> "Smith John"."""
    spaced = re.sub(r"_+|(?<=[A-Za-z])-(?=[A-Za-z])", " ", word)
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", spaced)
    spaced = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", spaced)
    if spaced.islower() and " " in spaced:  # tags are often lower case: "jane doe" reads as a name
        spaced = " ".join(part[:1].upper() + part[1:] for part in spaced.split(" "))
    return spaced


def _link_findings(text: str) -> Iterator[PhiFinding]:
    """Dates and patient parameters inside links (the rest of a link is a reference, skipped)."""
    for match in _LINK.finditer(text):
        link = match.group(0).rstrip(".,;:!?)]")
        url = link if "://" in link else f"http://{link}"
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            continue
        if _REFERENCE_HOSTS.search(parts.hostname or ""):
            continue
        start, end = match.start(), match.start() + len(link)
        inside = urllib.parse.unquote(f"{parts.path}?{parts.query}#{parts.fragment}")
        if _LINK_DATE.search(inside):
            # low: blogs and journals put publication dates in links too, so a person looks
            yield PhiFinding(PhiKind.DATE, start, end, link, "a full date inside a link", "low")
            continue
        keys = [key for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=False)]
        segments = [segment for segment in parts.path.split("/") if segment]
        path_keys = [key for key, value in itertools.pairwise(segments) if re.search(r"\d", value)]
        if any(_LINK_PATIENT_KEY.match(key) for key in keys + path_keys):
            yield PhiFinding(
                PhiKind.RECORD_NUMBER, start, end, link, "a patient or record parameter in a link"
            )


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
    yield from _matches(_AGE_SPELLED, text, PhiKind.AGE_OVER_89, "an age over 89", "low")
    yield from _matches(_RECORD_CODE, text, PhiKind.RECORD_NUMBER, "a medical record number")
    yield from _matches(_SPACED_DIGITS, text, PhiKind.RECORD_NUMBER, "a long number written digit by digit")
    yield from _matches(_EMAIL_OBFUSCATED, text, PhiKind.EMAIL, "an e-mail address written out")
    yield from _dates(_DATE_COMPACT, text)
    yield from _matches(_MONTH_YEAR, text, PhiKind.DATE, "a month and year", "low")
    yield from _matches(_DAY_MONTH_CUED, text, PhiKind.DATE, "a day and month", "low", group=1)
    for pattern in (_STREET, _CITY_STATE_ZIP, _CITY_STATE, _UK_POSTCODE, _PO_BOX, _UNIT, _ADDRESS_CUE):
        yield from _matches(pattern, text, PhiKind.ADDRESS, "a postal address", "low")
    yield from _matches(_INSTITUTION, text, PhiKind.INSTITUTION, "a hospital or clinic", "low")
    yield from _matches(_INITIALS, text, PhiKind.NAME, "initials with an age or a cue", "low")
    yield from _names(text)
    for hit in find_names(text):
        yield PhiFinding(PhiKind.NAME, hit.start, hit.end, text[hit.start : hit.end], f"{hit.why}", "low")


def _matches(
    pattern: re.Pattern[str],
    text: str,
    kind: PhiKind,
    reason: str,
    confidence: Confidence = "high",
    group: int = 0,
) -> Iterator[PhiFinding]:
    for match in pattern.finditer(text):
        start, end = match.span(group)
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
