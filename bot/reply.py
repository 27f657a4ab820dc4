"""The text of the bot's answers, as plain strings and dataclasses (no discord import).

The cog turns these into messages; everything that decides *what* people read lives here so it can be
tested without mocks. Three promises hold for every answer:

* it fits one Discord message (`MAX_CONTENT_CHARS`); when it would not, similar cases go first, then
  lower-ranked labels, and never the disclaimer or the model line;
* it says which weights answered, and says plainly when they are not PLIP or not hash-verified;
* text that came from users (captions, labels, file names, error details) cannot format the answer
  or ping anyone: markdown is escaped and every `@` is defused. The cog should still send with
  `AllowedMentions.none()`; the `<@author>` credit we add ourselves then renders without a ping.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from model.identity import ModelIdentity
from model.zeroshot import Prediction
from store.similar import SimilarCase

MAX_CONTENT_CHARS = 2000
"""Discord's limit on a message's content."""

MAX_LABELS_SHOWN = 10
MAX_LABEL_CHARS = 80
MAX_CAPTION_CHARS = 140
MAX_NAME_CHARS = 60
MAX_MODEL_CHARS = 120
MAX_ERROR_CHARS = 300

DISCLAIMER = "Decision support only — not a diagnosis."
UNCERTAIN_LINE = "⚠️ Uncertain: the top labels are close; treat this as 'don't know'."
NO_CASES_LINE = "No similar cases in this server's corpus yet."


def adapted_line(examples: int) -> str:
    """Said whenever a server's confirmed examples changed the answer (learning is never silent)."""
    return f"Adapted with {examples} confirmed example{'s' if examples != 1 else ''} from this server."

_ZERO_WIDTH_SPACE = "\u200b"
_ZERO_WIDTH_JOINER = "\u200d"
_MARKDOWN_SPECIALS = re.compile(r"([\\*_~`|\[\]<])")
_MASS_MENTION = re.compile(r"@(everyone|here)")
_SAFE_LINK = re.compile(r"https://[^\s()<>\[\]]+")


# ---------------------------------------------------------------- small text helpers


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) as one space, control and invisible format characters dropped.

    User text lands inside a numbered list line; a newline in it would start a heading, a quote or a
    fake list item of its own. Format characters (category Cf: bidi overrides such as U+202E,
    zero-width spaces, word joiners) would let a label reverse or hide the text after it; the
    zero-width joiner is kept, since emoji sequences need it and it cannot reorder anything.
    """
    visible = "".join(
        " " if category == "Cc" else ch
        for ch in text
        if (category := unicodedata.category(ch)) != "Cf" or ch == _ZERO_WIDTH_JOINER
    )
    return " ".join(visible.split())


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a word boundary when one is near, ending in "…"."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.7:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-—") + "…"


def escape_markdown(text: str) -> str:
    """Discord's inline markdown shown literally: bold/italic, strike, code, spoilers, masked links,
    and `<...>` mentions, timestamps and custom emoji.

    Parentheses need no escape once `[` and `]` are escaped; quotes, headings and lists only start a
    line, and user text is always placed mid-line after a prefix of ours.
    """
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def escape_user_text(text: str) -> str:
    """Markdown in user text shown literally, and no mention (`@everyone`, `<@id>`, `<@&id>`) live.

    Backslash-escaping covers `<@id>`-style mentions; `@everyone` and `@here` have no escape, so a
    zero-width space after every `@` breaks them (it is invisible).
    """
    return escape_markdown(text).replace("@", "@" + _ZERO_WIDTH_SPACE)


def user_text(text: str, limit: int) -> str:
    """User-supplied text as one safe line: flattened, truncated (before escaping, so no escape is cut
    in half), then escaped."""
    return escape_user_text(truncate(one_line(text), limit))


def format_probability(probability: float) -> str:
    """Percent with one decimal ("87.3%").

    The extremes read "<0.1%" and ">99.9%": a rounded "0.0%" or "100.0%" would overstate certainty.
    """
    percent = min(max(probability, 0.0), 1.0) * 100.0
    if 0.0 < percent < 0.05:
        return "<0.1%"
    if 99.95 <= percent < 100.0:
        return ">99.9%"
    return f"{percent:.1f}%"


def describe_model(identity: ModelIdentity) -> str:
    """Who answered, in words: "PLIP (vinid/plip@67ade53d)", or a plain "not PLIP" for local weights.

    A local checkpoint's source is a server path (not for users' eyes), so it is replaced by the
    weights' hash prefix; registry weights without a published hash are flagged as unverified. Only
    the name is ever shortened, never the "not PLIP" or "not hash-verified" part.
    """
    if identity.name == "local":
        title = one_line(identity.title)
        if not title.startswith("local checkpoint"):
            title = f"local checkpoint {title}"
        return f"{truncate(title, MAX_MODEL_CHARS)} (not PLIP, sha256 {identity.short_revision})"
    label = truncate(one_line(identity.label), MAX_MODEL_CHARS)
    return label if identity.verified else f"{label}, weights not hash-verified"


def model_line(identity: ModelIdentity) -> str:
    """The "Model: ..." line every suggestion carries.

    Model titles come from the registry or the operator, not from chat users, so only markdown and
    mass mentions are defused: "vinid/plip@67ade53d" stays copyable, without an invisible character.
    """
    text = escape_markdown(describe_model(identity))
    return "Model: " + _MASS_MENTION.sub("@" + _ZERO_WIDTH_SPACE + r"\1", text)


def _neutral_link(link: str | None) -> str | None:
    """The jump link when it is a plain https URL that cannot break the `[jump](<...>)` syntax."""
    if link is None or not _SAFE_LINK.fullmatch(link):
        return None
    return link


# ---------------------------------------------------------------- sections


def _suggestion_lines(prediction: Prediction, shown: int) -> list[str]:
    return [
        f"{rank}. **{user_text(s.label, MAX_LABEL_CHARS)}** — {format_probability(s.probability)}"
        for rank, s in enumerate(prediction.suggestions[:shown], start=1)
    ]


def _suggestions_block(
    prediction: Prediction, label_set_name: str, shown: int, adapted_examples: int = 0
) -> str:
    total = min(len(prediction.suggestions), MAX_LABELS_SHOWN)
    lines = [f"**Suggested labels** · label set *{user_text(label_set_name, 40) or 'custom'}*"]
    if prediction.uncertain:
        lines.append(UNCERTAIN_LINE)
    lines.extend(_suggestion_lines(prediction, shown))
    if shown < total:
        lines.append(f"…{total - shown} more label(s) in the chart.")
    if adapted_examples:
        lines.append(adapted_line(adapted_examples))
    lines.append(model_line(prediction.model))
    return "\n".join(lines)


def format_suggestions(prediction: Prediction, label_set_name: str) -> str:
    """Ranked labels with probabilities, the uncertainty warning when it applies, and the model line.

    The warning comes before the numbers so nobody reads "1. adenocarcinoma — 41%" as an answer first.
    """
    return _suggestions_block(prediction, label_set_name, min(len(prediction.suggestions), MAX_LABELS_SHOWN))


def _attribution(case: SimilarCase, guild_id: int | None) -> str:
    """Credit for a case without pinging anyone or naming a member of another server.

    `server`-scoped cases are only ever returned to their own server, so their poster is a member
    here; a `shared` case is only credited by mention when we know it comes from this server.
    """
    if case.source != "discord":
        return f"imported from {user_text(case.source, 40)}"
    same_server = case.guild_id == guild_id if guild_id is not None else case.scope == "server"
    if case.author_id is not None and same_server:
        return f"shared by a consenting poster (<@{int(case.author_id)}>)"
    if not same_server and guild_id is not None:
        return "shared by a consenting poster in another server"
    return "shared by a consenting poster"


def _case_line(number: int, case: SimilarCase, *, show_scores: bool, guild_id: int | None) -> str:
    parts = [f"{number}."]
    head: list[str] = []
    if show_scores:
        head.append(f"{case.score:.2f}")
    head.append(user_text(case.caption, MAX_CAPTION_CHARS) or "*(no caption)*")
    link = _neutral_link(case.link)
    if link is not None:
        head.append(f"[jump](<{link}>)")
    parts.append(" — ".join(head))
    return " ".join(parts) + f" · {_attribution(case, guild_id)}"


def _case_lines(cases: Sequence[SimilarCase], *, show_scores: bool, guild_id: int | None) -> list[str]:
    return [
        _case_line(number, case, show_scores=show_scores, guild_id=guild_id)
        for number, case in enumerate(cases, start=1)
    ]


_CASES_TITLE = "**Similar cases**"


def format_similar_cases(
    cases: Sequence[SimilarCase], *, show_scores: bool = True, guild_id: int | None = None
) -> str:
    """Numbered cases, numbers matching the badges of `render.case_grid`.

    `guild_id` (the server asking) lets a shared case from this server credit its poster by mention;
    without it only `server`-scoped cases are credited by mention.
    """
    if not cases:
        return f"{_CASES_TITLE}\n{NO_CASES_LINE}"
    return "\n".join([_CASES_TITLE, *_case_lines(cases, show_scores=show_scores, guild_id=guild_id)])


def format_error(message: str) -> str:
    """One short line for people: flattened, bounded, and unable to ping or format."""
    text = user_text(message, MAX_ERROR_CHARS) or "Something went wrong."
    return f"⚠️ {text}"


def format_label_set(labels: Sequence[str], templates: Sequence[str], source: str) -> str:
    """The `/labels` reply: the labels a moderator typed and the prompt templates, shown literally.

    Labels come from any moderator of any server and templates from the operator; both are escaped
    and flattened like every other text we echo. Labels that do not fit are counted, never cut
    mid-escape.
    """
    head = f"Labels ({user_text(source, 20)}): "
    shown_templates = " | ".join(user_text(t, 120) for t in templates) if templates else "(model default)"
    tail = f"\nTemplates: {truncate(shown_templates, 600)}"
    budget = MAX_CONTENT_CHARS - 100 - len(head) - len(tail)
    kept: list[str] = []
    used = 0
    for label in labels:
        text = user_text(label, MAX_LABEL_CHARS)
        if used + len(text) + 2 > budget:
            break
        kept.append(text)
        used += len(text) + 2
    more = f" …and {len(labels) - len(kept)} more" if len(kept) < len(labels) else ""
    return head + ", ".join(kept) + more + tail


def format_search_answer(
    query: str, cases: Sequence[SimilarCase], identity: ModelIdentity, *, guild_id: int | None
) -> tuple[str, int]:
    """The answer to a text search and how many cases it lists (the grid shows as many).

    The query is echoed escaped, like any user text. Cases are dropped from the end when the text
    would pass Discord's limit; the model line and the disclaimer always stay.
    """
    header = f"Cases matching “{user_text(query, 100)}”:"
    footer = "\n".join([model_line(identity), DISCLAIMER])
    if not cases:
        return "\n".join([header, f"{_CASES_TITLE}\n{NO_CASES_LINE}", footer]), 0
    budget = MAX_CONTENT_CHARS - len(header) - len(footer) - len(_CASES_TITLE) - 3
    lines = _case_lines(cases, show_scores=True, guild_id=guild_id)
    kept, shown = _fit_cases(lines, max(budget, 0))
    return "\n".join([header, _CASES_TITLE, *kept, footer]), shown


# ---------------------------------------------------------------- the whole answer


@dataclass(frozen=True)
class AnswerText:
    """What the cog sends: `content` (always within `MAX_CONTENT_CHARS`) and what it needs to match it.

    `cases_shown` is how many similar cases the text lists, numbered from 1: pass that many
    thumbnails to `render.case_grid` so the badges and the list agree. The cog should send with
    `AllowedMentions.none()`.
    """

    content: str
    cases_shown: int
    cases_total: int
    labels_shown: int
    uncertain: bool


def _fit_cases(lines: Sequence[str], budget: int) -> tuple[list[str], int]:
    """As many case lines as fit in `budget` characters, with an overflow note if any are left out."""
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        remaining = len(lines) - index - 1
        note = len(f"\n…and {remaining} more not shown.") if remaining else 0
        if used + 1 + len(line) + note > budget:
            break
        kept.append(line)
        used += 1 + len(line)
    left_out = len(lines) - len(kept)
    if left_out:
        kept.append(f"…and {left_out} more not shown.")
    return kept, len(lines) - left_out


def compose_answer(
    prediction: Prediction | None,
    cases: Sequence[SimilarCase] | None,
    *,
    label_set_name: str,
    image_name: str,
    show_scores: bool = True,
    guild_id: int | None = None,
    adapted_examples: int = 0,
) -> AnswerText:
    """The full answer to one image: header, suggestions, similar cases, disclaimer.

    `prediction=None` leaves the suggestions out (search-only answers); `cases=None` leaves the case
    section out (search not asked for, or not available), while an empty list says the corpus has
    nothing yet. When the text would pass Discord's limit, similar cases are dropped from the end
    first, then lower-ranked labels (the chart still shows them); header, model line and disclaimer
    always stay. `adapted_examples` > 0 says the server's confirmed examples changed the answer.
    """
    header = f"Results for **{user_text(image_name, MAX_NAME_CHARS) or 'image'}**"
    footer = f"*{DISCLAIMER}*"
    total_labels = min(len(prediction.suggestions), MAX_LABELS_SHOWN) if prediction else 0

    labels_shown = total_labels
    while True:
        blocks = [header]
        if prediction is not None:
            blocks.append(_suggestions_block(prediction, label_set_name, labels_shown, adapted_examples))
        fixed = "\n\n".join([*blocks, footer])
        case_budget = MAX_CONTENT_CHARS - len(fixed) - len("\n\n") - len(_CASES_TITLE) - 1
        if cases is None or case_budget >= len(NO_CASES_LINE) + 1 or labels_shown <= 1:
            break
        labels_shown -= 1

    cases_shown = 0
    if cases is not None:
        if not cases:
            blocks.append(f"{_CASES_TITLE}\n{NO_CASES_LINE}")
        else:
            lines = _case_lines(cases, show_scores=show_scores, guild_id=guild_id)
            kept, cases_shown = _fit_cases(lines, max(case_budget, 0))
            if kept:
                blocks.append("\n".join([_CASES_TITLE, *kept]))
    content = "\n\n".join([*blocks, footer])
    if len(content) > MAX_CONTENT_CHARS:  # unreachable with the caps above; never lose the footer
        content = content[: MAX_CONTENT_CHARS - len(footer) - 3] + "…\n\n" + footer
    return AnswerText(
        content=content,
        cases_shown=cases_shown,
        cases_total=len(cases) if cases is not None else 0,
        labels_shown=labels_shown,
        uncertain=bool(prediction and prediction.uncertain),
    )
