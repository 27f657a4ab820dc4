"""Personal names without a cue word ("John Smith, 54M"), found with UCSF Philter's name lexicons.

Philter (philter-lite on PyPI) was built to de-identify clinical notes; its strength for us is its
data: 97k first names, 161k surnames and 195k words it judged safe, gathered from clinical text. Its
own pipeline is not used: it needs nltk's part-of-speech tagger data (not installable from PyPI, so
not offline), and, tuned for recall on notes, it flags most eponyms and stain names in a pathology
caption (bench/phi_bench.py measures both). Instead, a name here is a shape that the lexicons fill:

* first name + surname, both capitalised (or both upper case, as on slide labels), an optional
  middle initial between them: "John Smith", "Daniel B. Murphy", "SMITH JOHN";
* surname, comma, first name: "Smith, John", "SMITH, JOHN"; on labels also "OKAFOR, C.";
* a first name or surname followed by an age and sex: "Maria, 54F", "Okafor 67 y/o".

and pathology's own words veto it: an eponym noun after the pair ("Homer Wright rosettes", "Sister
Mary Joseph nodule"), an author citation ("Clark and Mihm", "Epstein et al."), a doctor's title
before it (a clinician is not the patient), or a word of the pathology vocabulary below. A
capitalised common word at the start of a sentence ("Classic Birbeck granules") is not a first name.

The lexicons load once per process (under a second); if philter-lite is not installed the name check
finds nothing and says so once in the log, and the other detectors of `ingest.phi` still run.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Nouns that make the capitalised words before them an eponym, not a person.
_EPONYM_NOUNS = frozenset(
    """
    disease diseases syndrome syndromes tumor tumors tumour tumours body bodies cell cells rosette
    rosettes nodule nodules granule granules sign signs lymphoma sarcoma carcinoma stain stains staining
    fiber fibers fibre fibres crystal crystals spiral spirals contracture nevus naevus polyp polyps
    thyroiditis microabscess microabscesses lymphadenitis classification criteria score scores grade
    grading system type pattern phenomenon reaction triad space spaces membrane layer zone procedure
    operation test cyst cysts ulcer ulcers index scale level levels stage staging granuloma granulomas
    hyperplasia dysplasia metaplasia neoplasm sclerosis encephalopathy anomaly malformation lesion
    lesions change changes method technique protocol medium solution
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
# Capitalised words of pathology that are also in the name lexicons: eponyms rarely borne by
# patients, stains, markers, organisms and the places in classification names. Eponyms that are
# common surnames (Wilson, Jones, Wright, Clark) are not here: they are vetoed only by a noun after
# them ("Wilson disease", "Jones stain"), so "Lisa Jones, 44F" is still a name.
_PATHOLOGY_WORDS = frozenset(
    """
    hodgkin crohn gleason sternberg warthin kaposi burkitt wilms whipple merkel hashimoto cushing
    langerhans congo schiff gomori grocott ziehl neelsen giemsa perls prussian fontana verhoeff gieson
    alcian sertoli leydig krukenberg schiller duval exner councilman michaelis gutmann verocay antoni
    flexner wintersteiner rosenthal lewy hirano negri aschoff langhans civatte kamino pautrier kogoj
    breslow nottingham fuhrman astler coller kikuchi fujimoto rosai dorfman hurthle askanazy riedel
    quervain zollinger ellison peutz jeghers cowden fraumeni borrmann menetrier zenker meckel barrett
    hirschsprung brunner paneth kupffer disse dubin klatskin sezary epstein dutcher waldenstrom birbeck
    erdheim gaucher niemann fabry alzheimer creutzfeldt jakob wegener churg takayasu kawasaki henoch
    goodpasture alport kimmelstiel virchow libman curschmann charcot leyden schaumann pancoast walthard
    bartholin gartner papanicolaou bethesda lugano amsterdam vienna sydney helicobacter candida
    aspergillus cryptococcus pneumocystis mycobacterium treponema leishmania toxoplasma giardia ki melan
    napsin
    """.split()  # noqa: SIM905
)
_DOCTOR_TITLES = re.compile(r"(?:\b(?:Dr|Drs|Prof|Professor|Doctor|Dr\.|Prof\.)\s*\.?\s*$)")
_CITATION_AFTER = re.compile(
    r"^[ \t]*(?:,[ \t]*)?(?:\((?:19|20)\d\d\)|(?:19|20)\d\d\b(?![-/.]\d))"
    r"|^\s*(?:et\.?\s+al\b|and\s+(?:colleagues|coworkers|co-workers)\b)"
)

_WORD = r"(?:[A-Z]['’])?[A-Z][a-z]+(?:[A-Z][a-z]+)?"
_CAPS = r"[A-Z]{2,}(?:['’][A-Z]+)?"
# "John Smith", "John B. Smith", "John Smith's" (the possessive is not part of the name).
_FIRST_LAST = re.compile(rf"\b({_WORD})\s+(?:[A-Z]\.?\s+)?({_WORD})\b(?!['’-]?[A-Z])")
_FIRST_LAST_CAPS = re.compile(rf"\b({_CAPS})\s+(?:[A-Z]\.?\s+)?({_CAPS})\b")
_LAST_COMMA_FIRST = re.compile(rf"\b({_WORD}),\s*({_WORD})\b|\b({_CAPS}),\s*({_CAPS})\b")
# "OKAFOR, C." as slide labels print it (upper case only: "Smith, J." is how papers are cited).
_CAPS_SURNAME_INITIAL = re.compile(rf"\b({_CAPS}),\s*[A-Z]\.(?!\w)")
_NAME_AGE_SEX = re.compile(
    rf"\b({_WORD}),?\s+\d{{1,3}}\s*(?:[MF]\b|yo\b|y/o\b|y\.o\.|-?\s*years?[-\s]old\b|-year\b)"
)


@dataclass(frozen=True)
class NameHit:
    """Where a likely name is and which shape matched."""

    start: int
    end: int
    why: str


@dataclass(frozen=True)
class NameLexicon:
    """Philter's first names, surnames and the safe words among them ("mark", "rose"), lower case."""

    first_names: frozenset[str]
    last_names: frozenset[str]
    safe_words: frozenset[str]

    def is_first(self, word: str) -> bool:
        return _key(word) in self.first_names

    def is_last(self, word: str) -> bool:
        return _key(word) in self.last_names

    def is_common_word(self, word: str) -> bool:
        return _key(word) in self.safe_words


def _key(word: str) -> str:
    """The lexicons spell O'Connor as "oconnor"."""
    return word.lower().replace("'", "").replace("’", "")


def _philter_sets_file() -> Path | None:
    try:
        path = importlib.metadata.distribution("philter-lite").locate_file("philter_lite/filters/set.toml")
    except importlib.metadata.PackageNotFoundError:
        return None
    found = Path(str(path))
    return found if found.is_file() else None


@functools.cache
def name_lexicon() -> NameLexicon | None:
    """The lexicons from philter-lite's data, read without importing philter_lite (which imports
    nltk). The file is TOML with one array per line; reading the strings directly takes a tenth of
    the time of a TOML parse."""
    path = _philter_sets_file()
    if path is None:
        log.warning("philter-lite is not installed: names without a cue word are not screened")
        return None
    sets: dict[str, frozenset[str]] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            key = re.match(r"\s*(\w+)\s*=\s*\[", line)
            if key:
                sets[key.group(1)] = frozenset(w.lower() for w in re.findall(r'"([^"\\]*)"', line))
    first, last = sets["firstnames"], sets["lastnames"]
    # Only names are ever looked up among the safe words: keep those (about 2k of 195k words).
    return NameLexicon(first, last, sets["nonames"] & (first | last))


def find_names(text: str, *, lexicon: NameLexicon | None = None) -> Iterator[NameHit]:
    """Likely personal names in `text` (already Unicode-normalised)."""
    lexicon = lexicon or name_lexicon()
    if lexicon is None:
        return
    for pattern in (_FIRST_LAST, _FIRST_LAST_CAPS):
        for match in pattern.finditer(text):
            first, last = match.group(1), match.group(2)
            if _is_name_pair(text, match.start(), match.end(), first, last, lexicon):
                yield NameHit(match.start(), match.end(), "a first name and a surname")
    for match in _LAST_COMMA_FIRST.finditer(text):
        last, first = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        if (
            lexicon.is_last(last)
            and lexicon.is_first(first)
            and not _vetoed(text, match.start(), match.end(), (last, first), lexicon)
            and not (lexicon.is_common_word(last) and lexicon.is_common_word(first))
        ):
            yield NameHit(match.start(), match.end(), "a surname and a first name")
    for match in _CAPS_SURNAME_INITIAL.finditer(text):
        surname = match.group(1)
        if lexicon.is_last(surname) and not lexicon.is_common_word(surname) and not _vetoed(
            text, match.start(), match.end(), (surname,), lexicon
        ):
            yield NameHit(match.start(), match.end(), "a surname and an initial")
    for match in _NAME_AGE_SEX.finditer(text):
        word = match.group(1)
        if (
            (lexicon.is_first(word) or lexicon.is_last(word))
            and not lexicon.is_common_word(word)
            and not _vetoed(text, match.start(1), match.end(1), (word,), lexicon)
        ):
            yield NameHit(match.start(1), match.end(1), "a name before an age and sex")


def _is_name_pair(text: str, start: int, end: int, first: str, last: str, lexicon: NameLexicon) -> bool:
    if not (lexicon.is_first(first) and lexicon.is_last(last)):
        return False
    if _vetoed(text, start, end, (first, last), lexicon):
        return False
    if lexicon.is_common_word(first) and lexicon.is_common_word(last):
        return False  # "Mark Brown", "Rose Hill": ambiguous without a cue
    # a capitalised common word opening a sentence is not a first name ("Classic Birbeck granules")
    return not (lexicon.is_common_word(first) and _opens_sentence(text, start))


def _opens_sentence(text: str, start: int) -> bool:
    before = text[max(0, start - 20) : start].rstrip()
    return (not before and start <= 20) or (before[-1:] in (".", ":", ";", "!", "?", "\n"))


def _vetoed(text: str, start: int, end: int, words: tuple[str, ...], lexicon: NameLexicon) -> bool:
    if any(word.lower() in _PATHOLOGY_WORDS for word in words):
        return True
    if _DOCTOR_TITLES.search(text, max(0, start - 12), start):
        return True
    after = text[end : end + 40]
    if _CITATION_AFTER.match(after):
        return True
    next_word = re.match(r"\s*(?:['’]s\s+)?([A-Za-z]+)", after)
    return next_word is not None and next_word.group(1).lower() in _EPONYM_NOUNS
