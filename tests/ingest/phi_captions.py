"""A labelled set of realistic pathology captions for measuring the PHI screen (recall and false
positives per category), generated from a seed so the set is reviewable as code and identical on
every run.

Half the captions carry one identifier each, in one of several categories and several formats each
(names with and without a cue word, addresses, dates, dates and ids inside links, record numbers,
phone numbers, e-mail addresses, identifiers in tags, digits split by invisible characters). The
other half are ordinary captions written the way pathologists post them, chosen to contain what
trips naive screens: eponyms (Hodgkin, Crohn, Reed-Sternberg), scores (Gleason 3+4, Ki-67 30%),
stains and magnifications, measurements, ages under 90, years, hashtags, literature references and
links, doctors and authors (who are not patients).

The vocabularies here are written independently of `ingest.phi`'s word lists: the screen is judged
on names and eponyms it was not tuned to. `bench/phi_bench.py` prints the table; the tests in
tests/ingest/test_phi_corpus.py hold the thresholds.

Regenerate a JSONL for review with `python -m tests.ingest.phi_captions > captions.jsonl`.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

SEED = 20261203
PER_CATEGORY = 20  # x 10 categories each side = 400 captions


@dataclass(frozen=True)
class LabelledCaption:
    """One caption (and its tags), whether it holds an identifier, and the category it tests."""

    text: str
    tags: tuple[str, ...]
    has_phi: bool
    category: str


# --- vocabularies (independent of ingest.phi) -------------------------------------------------

FIRST_NAMES = (
    "John", "Mary", "James", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Susan",
    "William", "Karen", "Thomas", "Nancy", "Daniel", "Lisa", "Matthew", "Sandra", "Anthony", "Ashley",
    "Mark", "Emily", "Steven", "Donna", "Paul", "Michelle", "Andrew", "Carol", "Joshua", "Amanda",
    "Kevin", "Melissa", "Brian", "Deborah", "George", "Stephanie", "Timothy", "Rebecca", "Maria",
    "Jose", "Carlos", "Lucia", "Priya", "Rajesh", "Anjali", "Wei", "Xiao", "Mei", "Hiroshi", "Yuki",
    "Fatima", "Ahmed", "Omar", "Aisha", "Chukwuemeka", "Oluwaseun", "Siobhan", "Aoife", "Dmitri",
    "Svetlana", "Katarzyna", "Pierre", "Amelie", "Hans", "Ingrid", "Sofia", "Mateo"
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker",
    "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill",
    "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner", "Patel", "Shah",
    "Nguyen", "Tran", "Chen", "Wang", "Zhang", "Tanaka", "Sato", "Kim", "Park", "Okafor", "Adeyemi",
    "Kowalski", "Nowak", "Ivanova", "Petrov", "Murphy", "Kelly", "Schmidt", "Fischer", "Dubois",
    "Moreau", "Rossi", "Bianchi", "Silva", "Santos", "Haddad", "Khan"
)
TITLES = ("Mr.", "Mrs.", "Ms.", "Mr", "Mrs", "Miss")
STREETS = (
    "Baker Street", "Oak Avenue", "Maple Drive", "Elm St", "High Street", "Church Road", "Park Lane",
    "Sunset Blvd", "Cedar Court", "Mill Lane", "Victoria Road", "Pine St.", "Washington Ave",
    "Station Road", "Lakeview Drive", "King's Road",
)
CITIES_US = (
    ("Springfield", "IL"), ("Columbus", "OH"), ("Austin", "TX"), ("Portland", "OR"), ("Madison", "WI"),
    ("Denver", "CO"), ("Raleigh", "NC"), ("Tucson", "AZ"),
)
CITIES_UK = (("London", "NW1 6XE"), ("Leeds", "LS1 4AP"), ("Bristol", "BS8 1TH"), ("Oxford", "OX3 9DU"),
             ("Glasgow", "G12 8QQ"), ("Cardiff", "CF14 4XW"))
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December"
)
ORGANS = (
    "colon", "stomach", "breast", "prostate", "lung", "liver", "kidney", "thyroid", "skin", "lymph node",
    "ovary", "endometrium", "cervix", "bladder", "pancreas", "esophagus", "small bowel", "appendix",
    "brain", "bone marrow", "testis", "soft tissue", "salivary gland", "gallbladder",
)
PROCEDURES = (
    "biopsy", "core biopsy", "resection", "excision", "FNA", "polypectomy", "punch biopsy", "TURBT",
    "lobectomy", "wedge resection", "curettings", "cell block",
)
DIAGNOSES = (
    "tubular adenoma with low-grade dysplasia", "invasive ductal carcinoma, grade 2",
    "acinar adenocarcinoma, Gleason 3+4=7", "diffuse large B-cell lymphoma", "classic Hodgkin lymphoma",
    "papillary thyroid carcinoma, classic type", "clear cell renal cell carcinoma, WHO/ISUP grade 2",
    "serous borderline tumour", "seborrheic keratosis", "basal cell carcinoma, nodular type",
    "chronic active gastritis with H. pylori", "sessile serrated lesion", "hepatocellular carcinoma",
    "metastatic melanoma", "granulomatous lymphadenitis", "endometrioid adenocarcinoma, FIGO grade 1",
    "urothelial carcinoma, high grade", "GIST, spindle cell type", "Crohn disease with granulomas",
    "ulcerative colitis, moderately active", "squamous cell carcinoma, keratinizing",
    "pleomorphic adenoma", "Warthin tumor", "mucinous cystic neoplasm", "follicular lymphoma, grade 1-2",
)
STAINS = (
    "H&E", "PAS", "PAS-D", "Congo red", "trichrome", "reticulin", "GMS", "Giemsa", "Ziehl-Neelsen",
    "mucicarmine", "Perls", "Alcian blue", "EVG", "Fontana-Masson", "Warthin-Starry", "von Kossa",
)
MARKERS = (
    "CD20", "CD3", "CD5", "CD10", "CD30", "CD15", "CD34", "CD117", "DOG1", "BCL2", "BCL6", "MUM1",
    "TTF-1", "napsin A", "CK7", "CK20", "CDX2", "SATB2", "GATA3", "ER", "PR", "HER2", "p40", "p63",
    "S100", "SOX10", "HMB-45", "Melan-A", "PAX8", "WT1", "p16", "p53", "synaptophysin", "chromogranin",
    "INSM1", "ALK", "ROS1", "PD-L1 (22C3)", "MLH1", "PMS2", "MSH2", "MSH6", "SMA", "desmin",
)
EPONYM_PHRASES = (
    "Reed-Sternberg cells", "Hodgkin lymphoma", "Crohn disease", "Barrett esophagus",
    "Hashimoto thyroiditis", "Graves disease", "Paget disease of the nipple", "Kaposi sarcoma",
    "Burkitt lymphoma", "Ewing sarcoma", "Wilms tumor", "Merkel cell carcinoma",
    "Langerhans cell histiocytosis", "Mallory-Denk bodies", "Russell bodies", "Dutcher bodies",
    "Call-Exner bodies", "Schiller-Duval bodies", "Homer Wright rosettes", "Flexner-Wintersteiner rosettes",
    "Michaelis-Gutmann bodies", "Verocay bodies", "Councilman bodies", "Aschoff bodies",
    "Rosai-Dorfman disease", "Kikuchi-Fujimoto lymphadenitis", "Castleman disease", "Hurthle cells",
    "Brenner tumor", "Sertoli-Leydig cell tumor", "Krukenberg tumor", "Whipple disease",
    "Hirschsprung disease", "Peutz-Jeghers polyp", "Lynch syndrome", "Spitz nevus",
    "Bowen disease", "Dupuytren contracture", "Castleman disease, hyaline vascular",
    "Birbeck granules", "Touton giant cells", "Langhans giant cells", "Rosenthal fibers",
    "Lewy bodies", "Pick bodies", "Kimmelstiel-Wilson nodules", "Curschmann spirals",
    "Charcot-Leyden crystals", "Cowden syndrome", "Li-Fraumeni syndrome", "Warthin tumour",
    "Pautrier microabscesses", "Civatte bodies", "Kamino bodies", "Sister Mary Joseph nodule",
)
DOCTORS = ("Dr. Rosai", "Dr Epstein", "Prof. Ellis", "Dr. Fletcher", "Dr. Weiss", "Dr Chan",
           "Dr. Ackerman", "Prof Moch", "Dr. Jaffe", "Dr. Montgomery")
AUTHORS = ("Epstein et al.", "Amin et al. (2017)", "Fletcher and colleagues", "Lauren (1965)",
           "Nottingham (Elston and Ellis)", "Miettinen and Lasota", "Gleason (1966)", "Breslow's",
           "Clark and Mihm", "Fuhrman et al.")
HASHTAGS = ("#gipath", "#dermpath", "#pathtwitter", "#gynpath", "#hemepath", "#GUpath", "#breastpath",
            "#cytopathology", "#neuropath", "#pathology", "#FOAMed", "#pulmpath", "#HNpath", "#softtissue",
            "#pathresidents", "#MolecularPathology", "#TumorBoard", "#IHC", "#USCAP2025", "#pathboards")
TAG_WORDS = ("gi", "derm", "breast", "gyn", "heme", "gu", "lung", "neuro", "cyto", "soft tissue",
             "teaching", "unknown case", "quiz", "frozen section", "IHC", "molecular")


def _cap(text: str) -> str:
    """`text` with its first letter upper case (str.capitalize would lower "GIST" and "Gleason")."""
    return text[:1].upper() + text[1:]


class _Writer:
    """Builds the captions of one category with a shared random source."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    def age(self, low: int = 18, high: int = 88) -> int:
        return self.rng.randint(low, high)

    def age_sex(self) -> str:
        age = self.age()
        return self.pick((f"{age}M", f"{age}F", f"{age} M", f"{age}yo F", f"{age}-year-old man",
                          f"{age}-year-old woman", f"{age} y/o male", f"{age}F"))

    def specimen(self) -> str:
        return f"{self.pick(ORGANS)} {self.pick(PROCEDURES)}"

    def finding(self) -> str:
        return self.pick(DIAGNOSES)

    def stain_phrase(self) -> str:
        return self.pick((f"{self.pick(STAINS)} {self.pick(('4x', '10x', '20x', '40x', 'x400', '200x'))}",
                          f"{self.pick(MARKERS)} positive", f"{self.pick(MARKERS)}+, {self.pick(MARKERS)}-",
                          "H&E 40x"))

    def name(self) -> tuple[str, str]:
        return self.pick(FIRST_NAMES), self.pick(LAST_NAMES)

    def digits(self, n: int) -> str:
        return "".join(str(self.rng.randint(0, 9)) for _ in range(n))

    def date(self) -> str:
        year = self.rng.randint(1935, 2025)
        month = self.rng.randint(1, 12)
        day = self.rng.randint(1, 28)
        name = MONTHS[month - 1]
        return self.pick((
            f"{day:02d}/{month:02d}/{year}", f"{month}/{day}/{year}", f"{year}-{month:02d}-{day:02d}",
            f"{day}.{month}.{year}", f"{name} {day}, {year}", f"{day} {name} {year}",
            f"{day}-{name[:3]}-{year}", f"{day:02d}{name[:3].upper()}{year}", f"{name[:3]} {day} {year}",
            f"{day}/{month}/{str(year)[2:]}", f"{year}/{month:02d}/{day:02d}",
        ))


# --- identifiers --------------------------------------------------------------------------------


def _name_cued(w: _Writer) -> tuple[str, tuple[str, ...]]:
    first, last = w.name()
    return w.pick((
        f"Patient {first} {last}, {w.specimen()}: {w.finding()}",
        f"{w.pick(TITLES)} {last}, {w.age_sex()}, {w.specimen()}",
        f"Name: {first} {last}. {w.finding()}",
        f"pt {first} {last} - {w.specimen()}, {w.stain_phrase()}",
        f"{_cap(w.finding())} in {w.pick(TITLES)} {first[0]}. {last}",
        f"Patient name {last}, {first} - {w.specimen()}",
        f"{_cap(w.specimen())} from patient {last}; {w.stain_phrase()}",
    )), ()


def _name_uncued(w: _Writer) -> tuple[str, tuple[str, ...]]:
    first, last = w.name()
    return w.pick((
        f"{first} {last}, {w.age_sex()}, {w.specimen()}",
        f"{_cap(w.specimen())} of {first} {last}: {w.finding()}",
        f"{last}, {first} - {w.specimen()}, {w.stain_phrase()}",
        f"{first} {w.pick('ABCDEFGHJKLMNPRSTW')}. {last} {w.age_sex()} {w.finding()}",
        f"{_cap(w.finding())} ({first} {last}), {w.stain_phrase()}",
        f"{first}, {w.age_sex()}: {w.specimen()}, {w.finding()}",
        f"{last.upper()}, {first.upper()} {w.specimen()}",
        f"Follow-up on {first} {last}'s {w.specimen()}",
    )), ()


def _address(w: _Writer) -> tuple[str, tuple[str, ...]]:
    number = w.rng.randint(1, 9999)
    street = w.pick(STREETS)
    city, state = w.pick(CITIES_US)
    uk_city, postcode = w.pick(CITIES_UK)
    zip_code = w.digits(5)
    return w.pick((
        f"{_cap(w.specimen())}, pt lives at {number} {street}, {city}, {state} {zip_code}",
        f"{_cap(w.finding())}; address {number} {street}, {uk_city} {postcode}",
        f"{number} {street} {city} {state} - {w.specimen()}",
        f"{_cap(w.specimen())} ({w.stain_phrase()}), home: Flat {w.rng.randint(1, 40)}, "
        f"{number} {street}, {uk_city} {postcode}",
        f"Send slides back to {number} {street}, Apt {w.rng.randint(1, 30)}{w.pick('ABC')}, {city}, {state}",
        f"{_cap(w.finding())} - {uk_city} {postcode}",
        f"{_cap(w.specimen())}, from {number} {street}",
        f"P.O. Box {w.rng.randint(10, 9999)}, {city}, {state} {zip_code}; {w.finding()}",
    )), ()


def _date(w: _Writer) -> tuple[str, tuple[str, ...]]:
    date = w.date()
    return w.pick((
        f"{_cap(w.specimen())} taken {date}: {w.finding()}",
        f"DOB {date}, {w.specimen()}",
        f"{_cap(w.finding())}, resected on {date}",
        f"Seen in clinic {date}; {w.specimen()} {w.stain_phrase()}",
        f"{_cap(w.specimen())} ({date}) - {w.stain_phrase()}",
        f"Born {date}. {w.finding()}",
        f"Collected: {date} | {w.specimen()} | {w.finding()}",
        f"Died {date}, autopsy: {w.finding()}",
    )), ()


def _date_in_url(w: _Writer) -> tuple[str, tuple[str, ...]]:
    year, month, day = w.rng.randint(2005, 2025), w.rng.randint(1, 12), w.rng.randint(1, 28)
    host = w.pick(("pacs.stmarys-hospital.org", "slides.example-health.net", "imgur.com/a",
                   "drive.example.com/file", "wsi.university-med.edu"))
    return w.pick((
        f"{_cap(w.finding())}, full slide: https://{host}/cases/{year}-{month:02d}-{day:02d}/slide3.svs",
        f"{_cap(w.specimen())} https://{host}/viewer?study={year}{month:02d}{day:02d}&slide=2",
        f"WSI here https://{host}/{year}/{month:02d}/{day:02d}/{w.pick(ORGANS).replace(' ', '-')}.png",
        f"{_cap(w.finding())} - https://{host}/view?mrn={w.digits(8)}",
        f"https://{host}/report?dob={month:02d}/{day:02d}/{year} {w.stain_phrase()}",
        f"{_cap(w.specimen())}: https://{host}/scan_{day:02d}.{month:02d}.{year}.jpg",
        f"see https://{host}/patient/{w.digits(7)}/slides for the rest",
    )), ()


def _record_number(w: _Writer) -> tuple[str, tuple[str, ...]]:
    return w.pick((
        f"MRN {w.digits(8)}, {w.specimen()}",
        f"MRN: {w.pick('ABCDEFGHK')}{w.digits(6)} - {w.finding()}",
        f"{_cap(w.finding())} (acc# S{w.digits(2)}-{w.digits(5)})",
        f"Accession {w.pick(('SP', 'S', 'CS', 'SC', 'NP'))}-{w.digits(2)}-{w.digits(6)}: {w.specimen()}",
        f"{_cap(w.specimen())}, hospital no. {w.digits(7)}",
        f"{_cap(w.finding())} - ref {w.digits(9)}",
        f"Case {w.pick(('S', 'SP'))}{w.digits(2)}-{w.digits(4)} {w.stain_phrase()}",
        f"{_cap(w.specimen())} Pt ID: {w.digits(6)}",
        f"Med rec # {w.digits(3)}-{w.digits(2)}-{w.digits(3)} {w.finding()}",
        f"{_cap(w.finding())}. NHS number 943 476 5919",
        f"SSN {w.digits(3)}-{w.digits(2)}-{w.digits(4)} on the requisition, {w.specimen()}",
    )), ()


def _phone(w: _Writer) -> tuple[str, tuple[str, ...]]:
    a, b, c = w.rng.randint(201, 989), w.rng.randint(200, 999), w.digits(4)
    return w.pick((
        f"{_cap(w.specimen())}, call {a}-{b}-{c} for blocks",
        f"{_cap(w.finding())} - family contact ({a}) {b}-{c}",
        f"Tel: +44 20 {w.digits(4)} {w.digits(4)} re {w.specimen()}",
        f"{_cap(w.specimen())}; ph {a}.{b}.{c}",
        f"Pt's mobile 07{w.digits(3)} {w.digits(6)}, {w.finding()}",
        f"+1 {a} {b} {c} - {w.specimen()}",
        f"{_cap(w.finding())}, contact +33 6 {w.digits(2)} {w.digits(2)} {w.digits(2)} {w.digits(2)}",
        f"{_cap(w.specimen())}: reach the daughter at {a}{b}{c}",
    )), ()


def _email(w: _Writer) -> tuple[str, tuple[str, ...]]:
    first, last = w.name()
    domain = w.pick(("gmail.com", "yahoo.co.uk", "hotmail.com", "outlook.com", "nhs.net", "mail.ru"))
    local = w.pick((f"{first.lower()}.{last.lower()}", f"{first[0].lower()}{last.lower()}{w.digits(2)}",
                    f"{last.lower()}_{first.lower()}"))
    return w.pick((
        f"{_cap(w.specimen())}, patient email {local}@{domain}",
        f"{_cap(w.finding())} - {local}@{domain}",
        f"Contact {local} at {domain.split('.')[0]} dot com about the {w.pick(ORGANS)} case",
        f"{_cap(w.specimen())} <{local}@{domain}>",
        f"{local} [at] {domain} - {w.finding()}",
        f"{_cap(w.finding())}; mailto:{local}@{domain}",
    )), ()


def _tag(w: _Writer) -> tuple[str, tuple[str, ...]]:
    first, last = w.name()
    caption = f"{_cap(w.specimen())}: {w.finding()}"
    tag = w.pick((f"{first} {last}", f"MRN {w.digits(8)}", f"{first}{last}", f"{last}-{first}",
                  f"S{w.digits(2)}-{w.digits(5)}", f"dob {w.date()}", f"{first.lower()}_{last.lower()}"))
    if w.rng.random() < 0.5:
        return caption, (w.pick(TAG_WORDS), tag)
    hashtag = "#" + tag.replace(" ", "").replace("-", "")
    return f"{caption} {w.pick(HASHTAGS)} {hashtag}", ()


_INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")


def _obfuscated(w: _Writer) -> tuple[str, tuple[str, ...]]:
    """Identifiers whose digits are split by invisible characters or written in full-width forms."""
    sep = w.pick(_INVISIBLE)
    mrn = sep.join(w.digits(8))
    date = w.date()
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in date)
    phone = f"{w.rng.randint(201, 989)}-{w.rng.randint(200, 999)}-{w.digits(4)}"
    first, last = w.name()
    return w.pick((
        f"MRN {mrn}, {w.specimen()}",
        f"{_cap(w.specimen())} {sep.join(w.digits(9))}",
        f"DOB {fullwidth} - {w.finding()}",
        f"{_cap(w.finding())}, call {sep.join(phone)}",
        f"{first}{sep} {last}{sep}, {w.age_sex()}, {w.specimen()}",
        f"{_cap(w.specimen())} taken {sep.join(date)}",
        f"{first.lower()}{sep}@{sep}hospital.org {w.finding()}",
    )), ()


PHI_CATEGORIES: dict[str, Callable[[_Writer], tuple[str, tuple[str, ...]]]] = {
    "name (cued)": _name_cued,
    "name (no cue)": _name_uncued,
    "address": _address,
    "date": _date,
    "link with date/id": _date_in_url,
    "record number": _record_number,
    "phone": _phone,
    "e-mail": _email,
    "tag": _tag,
    "split/width digits": _obfuscated,
}

# --- ordinary captions --------------------------------------------------------------------------


def _eponyms(w: _Writer) -> tuple[str, tuple[str, ...]]:
    eponym = w.pick(EPONYM_PHRASES)
    return w.pick((
        f"{_cap(eponym)} in a {w.specimen()}",
        f"{_cap(w.specimen())} showing {eponym}, {w.stain_phrase()}",
        f"Classic {eponym}. {w.stain_phrase()}",
        f"Would you call these {eponym}? {w.pick(HASHTAGS)}",
        f"{eponym} vs mimic - {w.pick(MARKERS)} helps",
    )), ()


def _scores(w: _Writer) -> tuple[str, tuple[str, ...]]:
    major, minor = w.rng.choice(((3, 3), (3, 4), (4, 3), (4, 4), (4, 5), (5, 4)))
    return w.pick((
        f"Gleason {major}+{minor}={major + minor}, Grade Group {w.rng.randint(1, 5)}, "
        f"{w.rng.randint(1, 12)}/{w.rng.randint(12, 14)} cores",
        f"Ki-67 {w.rng.randint(1, 90)}%, mitoses {w.rng.randint(0, 40)}/10 HPF",
        f"pT{w.rng.randint(1, 4)}{w.pick('ab')} pN{w.rng.randint(0, 2)} ({w.rng.randint(0, 5)}/"
        f"{w.rng.randint(10, 30)}) cM0, AJCC 8th",
        f"Nottingham grade {w.rng.randint(1, 3)} (score {w.rng.randint(3, 9)}/9), "
        f"ER {w.rng.randint(0, 100)}%,"
        f" PR {w.rng.randint(0, 100)}%, HER2 {w.rng.randint(0, 3)}+",
        f"PD-L1 (22C3) TPS {w.rng.randint(1, 100)}%, CPS {w.rng.randint(1, 60)}",
        f"Breslow {w.rng.randint(1, 9)}.{w.rng.randint(0, 9)} mm, Clark level IV, {w.rng.randint(0, 12)} "
        f"mitoses/mm2",
        f"FIGO grade {w.rng.randint(1, 3)}, {w.rng.randint(5, 80)}% solid, LVSI present",
        f"Fuhrman/ISUP {w.rng.randint(1, 4)}, {w.rng.randint(1, 12)}.{w.rng.randint(0, 9)} cm",
    )), ()


def _stains(w: _Writer) -> tuple[str, tuple[str, ...]]:
    return w.pick((
        f"{w.pick(STAINS)} and {w.pick(STAINS)}, {w.pick(('x100', 'x200', 'x400', '10x', '40x'))}",
        f"{w.pick(MARKERS)}+, {w.pick(MARKERS)}+, {w.pick(MARKERS)}-, {w.pick(MARKERS)} patchy",
        f"{_cap(w.specimen())}, H&E 40x. {w.pick(MARKERS)} diffusely positive",
        f"{w.pick(MARKERS)}/{w.pick(MARKERS)} loss, {w.pick(MARKERS)} retained",
        f"{w.pick(STAINS)} highlights the organisms; {w.pick(MARKERS)} 1:{w.pick(('50', '100', '200'))}",
        f"MIB-1, HHV-8, SOX-10 and {w.pick(MARKERS)} on block A{w.rng.randint(1, 9)}",
    )), ()


def _measurements(w: _Writer) -> tuple[str, tuple[str, ...]]:
    return w.pick((
        f"{w.rng.randint(1, 12)}.{w.rng.randint(0, 9)} x {w.rng.randint(1, 9)}.{w.rng.randint(0, 9)} x "
        f"{w.rng.randint(1, 5)} cm {w.pick(ORGANS)} mass, margins {w.rng.randint(1, 20)} mm",
        f"{_cap(w.specimen())}: {w.rng.randint(2, 40)} g, {w.rng.randint(1, 9)} fragments, "
        f"aggregate {w.rng.randint(1, 5)}.{w.rng.randint(0, 9)} cm",
        f"Scale bar {w.pick(('50', '100', '200', '500'))} µm; {w.rng.randint(10, 90)}% tumour cellularity",
        f"{w.rng.randint(2, 30)}/{w.rng.randint(31, 60)} lymph nodes positive, ENE {w.rng.randint(1, 5)} mm",
        f"Hb {w.rng.randint(7, 15)}.{w.rng.randint(0, 9)} g/dL, platelets {w.rng.randint(50, 450)} x10^9/L",
        f"Depth of invasion {w.rng.randint(1, 15)} mm, {w.rng.randint(1000, 9000)} cells counted",
        f"17q21.31 deletion, {w.rng.randint(1000000, 9000000)} bp; t(14;18)(q32;q21)",
    )), ()


def _hashtags(w: _Writer) -> tuple[str, tuple[str, ...]]:
    tags = " ".join(w.rng.sample(HASHTAGS, 3))
    if w.rng.random() < 0.4:
        return f"{_cap(w.finding())}, {w.stain_phrase()}", tuple(w.rng.sample(TAG_WORDS, 2))
    return f"{_cap(w.specimen())}, {w.finding()} {tags}", ()


def _references(w: _Writer) -> tuple[str, tuple[str, ...]]:
    snowflake = w.digits(18)
    return w.pick((
        f"Nice review: PMID {w.digits(8)}, "
        f"doi:10.{w.digits(4)}/s{w.digits(5)}-0{w.digits(2)}-{w.digits(5)}-{w.digits(1)}",
        f"{_cap(w.finding())} - see https://doi.org/10.1097/PAS.{w.digits(13)}",
        f"Same as https://discord.com/channels/{snowflake}/{w.digits(18)}/{w.digits(18)}",
        f"Thanks <@{snowflake}> for the {w.pick(STAINS)}!",
        "Guideline: https://www.cap.org/protocols-and-guidelines/cancer-reporting-tools/cancer-protocol-templates",
        f"WHO Classification of Tumours, 5th ed. ({w.rng.randint(2019, 2024)}), ICD-O {w.digits(4)}/3",
        f"https://pubmed.ncbi.nlm.nih.gov/{w.digits(8)}/ describes {w.pick(EPONYM_PHRASES)}",
        f"Trial NCT0{w.digits(7)}; ISBN 978-92-832-{w.digits(4)}-{w.digits(1)}",
    )), ()


def _ages_and_numbers(w: _Writer) -> tuple[str, tuple[str, ...]]:
    return w.pick((
        f"A {w.age()}-year-old {w.pick(('man', 'woman'))} with a {w.pick(ORGANS)} mass: {w.finding()}",
        f"{w.age_sex()}, {w.specimen()}, {w.finding()}",
        f"Case {w.rng.randint(1, 40)} of our series: {w.finding()}",
        f"Unknown case #{w.rng.randint(1, 99)} - {w.specimen()}",
        f"First described in {w.rng.randint(1890, 2015)}; seen {w.rng.randint(2, 20)} times since "
        f"{w.rng.randint(2000, 2020)}",
        f"Block A{w.rng.randint(1, 9)}, slide {w.rng.randint(1, 5)}, level {w.rng.randint(1, 4)}",
        f"Day {w.rng.randint(1, 30)} post transplant, {w.specimen()}",
        f"In the {w.pick(('1990s', '2000s'))}; from {w.rng.randint(2005, 2012)} to "
        f"{w.rng.randint(2013, 2024)}",
        f"Born at {w.rng.randint(23, 41)} weeks, placenta {w.rng.randint(250, 700)} g",
    )), ()


def _people_not_patients(w: _Writer) -> tuple[str, tuple[str, ...]]:
    return w.pick((
        f"Thanks {w.pick(DOCTORS)} for sharing this {w.pick(ORGANS)} case!",
        f"Criteria per {w.pick(AUTHORS)}: {w.finding()}",
        f"{w.pick(DOCTORS)} suggested {w.pick(MARKERS)}; {w.finding()}",
        f"As {w.pick(AUTHORS)} described, {w.pick(EPONYM_PHRASES)} are key",
        f"Consult from {w.pick(DOCTORS)}: {w.specimen()}",
        f"Patient consent obtained for sharing. {w.finding()}",
        f"The patient had a history of {w.pick(EPONYM_PHRASES)}",
    )), ()


def _dense_reports(w: _Writer) -> tuple[str, tuple[str, ...]]:
    return w.pick((
        f"{_cap(w.specimen())}: {w.finding()}. {w.stain_phrase()}; {w.pick(MARKERS)} "
        f"{w.rng.randint(1, 99)}%",
        f"DDx {w.pick(EPONYM_PHRASES)} vs {w.finding()}? {w.pick(HASHTAGS)}",
        f"Frozen section: {w.finding()}; final: same. TAT {w.rng.randint(10, 40)} min",
        f"{w.pick(MARKERS)} (clone {w.pick(('SP263', 'EP1', '4B5', 'D5F3', 'L26', 'MIB-1'))}) "
        f"{w.rng.randint(1, 99)}%, {w.pick(STAINS)} negative",
        f"{_cap(w.finding())}, {w.pick(('pT1a', 'pT2', 'pT3b', 'ypT0'))} {w.pick(('N0', 'N1a', 'N2'))}, "
        f"margins clear by {w.rng.randint(1, 30)} mm",
        f"COVID-19 lung, day {w.rng.randint(3, 30)}: diffuse alveolar damage, {w.stain_phrase()}",
    )), ()


CLEAN_CATEGORIES: dict[str, Callable[[_Writer], tuple[str, tuple[str, ...]]]] = {
    "eponyms": _eponyms,
    "scores and grades": _scores,
    "stains and markers": _stains,
    "measurements": _measurements,
    "hashtags and tags": _hashtags,
    "references and links": _references,
    "ages, counts, years": _ages_and_numbers,
    "doctors and authors": _people_not_patients,
    "dense reports": _dense_reports,
    "mixed clean": lambda w: w.pick(tuple(f for n, f in CLEAN_CATEGORIES.items() if n != "mixed clean"))(w),
}


def labelled_captions(seed: int = SEED, per_category: int = PER_CATEGORY) -> list[LabelledCaption]:
    """`per_category` captions for each category: identifiers first, then ordinary captions."""
    rng = random.Random(seed)
    writer = _Writer(rng)
    out: list[LabelledCaption] = []
    for has_phi, categories in ((True, PHI_CATEGORIES), (False, CLEAN_CATEGORIES)):
        for category, make in categories.items():
            seen: set[tuple[str, tuple[str, ...]]] = set()
            while len(seen) < per_category:
                text, tags = make(writer)
                if (text, tags) not in seen:
                    seen.add((text, tags))
                    out.append(LabelledCaption(text, tags, has_phi, category))
    return out


if __name__ == "__main__":
    for caption in labelled_captions():
        sys.stdout.write(json.dumps(asdict(caption), ensure_ascii=False) + "\n")
