"""Which model answered: carried by every embedding batch, suggestion and vector collection.

Random or unknown weights must never be presented as PLIP, so the title of a local checkpoint says
"local checkpoint", and a registry title is only used when the weights came from that registry entry
(and matched its published hash where one is known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelIdentity:
    """Name, human title, source and revision of the weights behind an encoder."""

    name: str  # registry name ("plip") or "local"
    title: str  # "PLIP", or "local checkpoint my-model"
    source: str  # "vinid/plip" or an absolute path
    revision: str  # pinned commit, resolved commit, or "sha256:<hex>" for local files
    verified: bool = False  # weights hash matched the registry's published hash

    @property
    def short_revision(self) -> str:
        """Eight characters of revision: enough to tell versions apart in a reply."""
        rev = self.revision.removeprefix("sha256:")
        return rev[:8]

    @property
    def label(self) -> str:
        """What people read: "PLIP (vinid/plip@67ade53d)"."""
        return f"{self.title} ({self.source}@{self.short_revision})"

    @property
    def key(self) -> str:
        """A filesystem- and collection-safe key unique to these weights: "plip__67ade53d"."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "model"
        return f"{slug}__{self.short_revision}"

    def as_dict(self) -> dict[str, str | bool]:
        """JSON-friendly form for CLI output and task results."""
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "revision": self.revision,
            "verified": self.verified,
            "label": self.label,
        }
