"""The one direct message a poster gets when their post was held or rejected on its way into the case
corpus: which post, why (the kind of problem, never the text that caused it), and what to do.

Plain logic, no discord import: the consent cog gathers the outcomes of a post's attachments and
sends what this returns. The reasons come from the ingest pipeline, which names kinds of identifier
("a likely identifier (name, record number)"), never the identifier; as a second guard, a reason that
itself screens positive (a file name holding a name, say) is replaced by a generic one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ingest.phi import screen_caption

NOT_STORED = ("held", "rejected")
MAX_REASON_CHARS = 160
_PHI_WORDS = ("identifier",)
_PIPELINE_PHI_REASON = re.compile(
    r"(?:caption|tags|caption and tags|text on the image) (?:contains? a likely|may contain an)"
    r" identifier \([a-z0-9 ,]+\)"
)


def ingest_notice(outcomes: Sequence[tuple[str, str]], where: str) -> str | None:
    """The DM for a post whose attachments had these `(outcome, reason)` pairs, or None when none was
    held or rejected (ingested, duplicate and no-consent posts need no word here). `where` names the
    post's place, e.g. a channel mention."""
    reasons = [_safe_reason(reason) for outcome, reason in outcomes if outcome in NOT_STORED]
    if not reasons:
        return None
    unique = list(dict.fromkeys(reasons))
    images = "Your image" if len(outcomes) == 1 else f"{len(reasons)} of your {len(outcomes)} images"
    verb = "was" if len(reasons) == 1 else "were"
    text = f"{images} in {where} {verb} not added to the case library: {'; '.join(unique)}."
    text += " Nothing from it was stored." if len(reasons) == 1 else " Nothing from them was stored."
    if any(word in reason for reason in unique for word in _PHI_WORDS):
        text += " Please edit out any patient details (in the caption, tags or on the image) and post again."
    return text


def _safe_reason(reason: str) -> str:
    reason = reason.strip().rstrip(".")
    if not reason:
        return "it could not be checked"
    if _PIPELINE_PHI_REASON.fullmatch(reason):
        return reason  # the pipeline's own wording: kinds only ("date of birth" would screen positive)
    if screen_caption(reason):
        return "it may contain an identifier"
    return reason[:MAX_REASON_CHARS]
