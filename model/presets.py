"""Built-in label sets: the paper's four evaluation sets and broad ones for unconfigured servers.

Label names and prompt templates follow PLIP's evaluation (`reproducibility/` in the authors' repo):
descriptive class names, and `An H&E image patch of {}.` or `An H&E image of {} tissue.`.
"""

from __future__ import annotations

from model.zeroshot import Label, LabelSet

_PATCH = "An H&E image patch of {}."
_TISSUE = "An H&E image of {} tissue."

# Kather's class folders (CRC-VAL-HE-7K, NCT-CRC-HE-100K) and the descriptive names PLIP prompts with.
_KATHER_FOLDERS = {
    "ADI": "adipose tissue",
    "BACK": "background",
    "DEB": "debris",
    "LYM": "lymphocytes",
    "MUC": "mucus",
    "MUS": "smooth muscle",
    "NORM": "normal colon mucosa",
    "STR": "cancer-associated stroma",
    "TUM": "colorectal adenocarcinoma epithelium",
}
# Per preset, how its dataset names its class folders when that differs from the labels
# (`plipbot eval` matches folders by these names as well as by the labels themselves).
_FOLDER_NAMES: dict[str, dict[str, str]] = {"kather": _KATHER_FOLDERS}


def _simple(name: str, description: str, labels: list[str], templates: list[str]) -> LabelSet:
    return LabelSet(
        name=name,
        description=description,
        labels=tuple(Label(text, tuple(templates)) for text in labels),
    )


def _build() -> dict[str, LabelSet]:
    presets = [
        _simple(
            "kather",
            "Kather colon (CRC-VAL-HE-7K): 9 colorectal tissue classes, the paper's main zero-shot set.",
            list(_KATHER_FOLDERS.values()),
            [_PATCH],
        ),
        _simple(
            "pannuke", "PanNuke: benign vs malignant tissue (19 organs).", ["benign", "malignant"], [_TISSUE]
        ),
        _simple(
            "digestpath",
            "DigestPath: benign vs malignant colonoscopy tissue.",
            ["benign", "malignant"],
            [_TISSUE],
        ),
        _simple(
            "wsss4luad",
            "WSSS4LUAD: lung adenocarcinoma tumor vs normal tissue.",
            ["tumor", "normal"],
            [_TISSUE],
        ),
        _simple(
            "organ",
            "Broad: which organ system a section comes from (for servers that configured nothing).",
            [
                "breast",
                "colon",
                "stomach",
                "liver",
                "pancreas",
                "lung",
                "kidney",
                "prostate",
                "bladder",
                "skin",
                "lymph node",
                "thyroid",
                "brain",
                "bone",
                "soft tissue",
                "uterus",
                "ovary",
                "testis",
            ],
            [_TISSUE, "A histopathology image of {} tissue."],
        ),
        _simple(
            "stain",
            "Broad: which stain or preparation an image shows.",
            [
                "hematoxylin and eosin stain",
                "immunohistochemistry stain",
                "special stain",
                "cytology smear",
                "frozen section",
                "gross specimen photograph",
            ],
            ["A pathology image of {}.", "A microscopy image showing {}."],
        ),
    ]
    return {p.name: p for p in presets}


def preset_names() -> list[str]:
    """Names accepted by `--preset` and `/labels preset`."""
    return sorted(_build())


def get_preset(name: str) -> LabelSet:
    """A built-in label set by name; unknown names raise a LabelSetError listing the valid ones."""
    from plipbot.errors import LabelSetError

    presets = _build()
    if name not in presets:
        raise LabelSetError(f"Unknown preset '{name}'. Presets: {', '.join(sorted(presets))}.")
    return presets[name]


def preset_folder_names(name: str) -> dict[str, str]:
    """Dataset class-folder names of a preset mapped to its labels (empty when folders are the labels)."""
    get_preset(name)  # unknown names fail with the list of presets
    return dict(_FOLDER_NAMES.get(name, {}))


DEFAULT_PRESET = "organ"
