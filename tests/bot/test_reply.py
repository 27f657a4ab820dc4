"""Answer text: Discord's limits, safe user text, and the lines that must never go missing."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from bot.reply import (
    DISCLAIMER,
    MAX_CONTENT_CHARS,
    NO_CASES_LINE,
    UNCERTAIN_LINE,
    AnswerText,
    compose_answer,
    describe_model,
    escape_user_text,
    format_error,
    format_label_set,
    format_probability,
    format_search_answer,
    format_similar_cases,
    format_suggestions,
    model_line,
    one_line,
    truncate,
)
from bot.services import ReplyFile, rendered
from model.identity import ModelIdentity
from model.zeroshot import Prediction, Suggestion
from store.similar import SimilarCase

PLIP = ModelIdentity("plip", "PLIP", "vinid/plip", "67ade53ddd32195868f422585f72698ef5d15094", True)
LOCAL = ModelIdentity(
    "local", "local checkpoint my_model", "/srv/secret/path/my_model", "sha256:" + "ab12" * 16
)
UNVERIFIED = ModelIdentity("quiltnet", "QuiltNet-B-32", "wisdomik/QuiltNet-B-32", "0123456789abcdef")
PLIP_LINE = "Model: PLIP (vinid/plip@67ade53d)"
HOSTILE = (
    "@everyone @here <@123> <@!77> <@&456> <#789> **bold** __u__ ~~s~~ `c` ||spoiler|| [x](https://evil)"
)
GUILD = 1000


def prediction(
    labels: list[str] | None = None,
    probabilities: list[float] | None = None,
    *,
    uncertain: bool = False,
    model: ModelIdentity = PLIP,
) -> Prediction:
    labels = labels or ["adenocarcinoma", "squamous cell carcinoma", "normal mucosa"]
    probabilities = probabilities or [0.873, 0.1, 0.027]
    suggestions = tuple(Suggestion(label, p) for label, p in zip(labels, probabilities, strict=True))
    return Prediction(suggestions, uncertain, margin=0.5, entropy=0.3, model=model)


def case(
    number: int = 1,
    *,
    caption: str = "Colon biopsy, moderately differentiated",
    link: str | None = "https://discord.com/channels/1000/2/3",
    score: float = 0.912,
    author_id: int | None = 42,
    scope: str = "server",
    source: str = "discord",
    guild_id: int = GUILD,
) -> SimilarCase:
    return SimilarCase(f"id-{number}", score, caption, source, link, guild_id, author_id, scope, ())


def live_mentions(text: str) -> list[str]:
    """Mentions Discord would resolve: @everyone/@here, and <@..>/<@&..> not escaped by a backslash."""
    return re.findall(r"@everyone|@here|(?<!\\)<@[!&]?\d+>", text)


# ---------------------------------------------------------------- suggestions


def test_suggestions_list_labels_with_percentages_and_the_model() -> None:
    text = format_suggestions(prediction(), "colon")
    lines = text.splitlines()
    assert "1. **adenocarcinoma** — 87.3%" in lines
    assert "2. **squamous cell carcinoma** — 10.0%" in lines
    assert "3. **normal mucosa** — 2.7%" in lines
    assert lines[-1] == PLIP_LINE
    assert "colon" in lines[0]
    assert UNCERTAIN_LINE not in text


def test_uncertain_suggestions_say_so_before_the_numbers() -> None:
    lines = format_suggestions(prediction(uncertain=True), "colon").splitlines()
    assert UNCERTAIN_LINE in lines
    assert lines.index(UNCERTAIN_LINE) < next(i for i, line in enumerate(lines) if line.startswith("1."))
    assert lines[-1] == PLIP_LINE


def test_local_checkpoint_is_never_presented_as_plip() -> None:
    text = format_suggestions(prediction(model=LOCAL), "colon")
    line = text.splitlines()[-1]
    assert line.startswith("Model: local checkpoint my\\_model (not PLIP")
    assert "ab12ab12" in line  # which weights, by hash prefix
    assert "/srv/secret" not in text  # the server's paths are not for users
    assert "not PLIP" in describe_model(LOCAL)


def test_unverified_registry_weights_are_flagged() -> None:
    assert (
        model_line(UNVERIFIED)
        == "Model: QuiltNet-B-32 (wisdomik/QuiltNet-B-32@01234567), weights not hash-verified"
    )
    assert model_line(PLIP) == PLIP_LINE


def test_at_most_ten_labels_are_listed() -> None:
    labels = [f"label {i}" for i in range(15)]
    text = format_suggestions(prediction(labels, [1 / 15] * 15), "many")
    assert "10. **label 9**" in text
    assert "11." not in text


@pytest.mark.parametrize(
    ("probability", "shown"),
    [
        (0.873, "87.3%"),
        (0.0, "0.0%"),
        (0.0002, "<0.1%"),
        (0.9999, ">99.9%"),
        (1.0, "100.0%"),
        (1.3, "100.0%"),
    ],
)
def test_probabilities_never_round_to_false_certainty(probability: float, shown: str) -> None:
    assert format_probability(probability) == shown


def test_labels_and_label_set_names_from_users_are_escaped() -> None:
    text = format_suggestions(prediction([HOSTILE, "b", "c"]), "@everyone **set**")
    assert live_mentions(text) == []
    assert "**set**" not in text


# ---------------------------------------------------------------- similar cases


def test_cases_are_numbered_with_score_caption_link_and_credit() -> None:
    text = format_similar_cases([case(1), case(2, score=0.8, link=None)], guild_id=GUILD)
    lines = text.splitlines()
    assert lines[1] == (
        "1. 0.91 — Colon biopsy, moderately differentiated — "
        "[jump](<https://discord.com/channels/1000/2/3>) · shared by a consenting poster (<@42>)"
    )
    assert lines[2].startswith("2. 0.80 — Colon biopsy")
    assert "[jump]" not in lines[2]


def test_scores_can_be_hidden() -> None:
    text = format_similar_cases([case(1)], show_scores=False)
    assert "0.91" not in text
    assert text.splitlines()[1].startswith("1. Colon biopsy")


def test_no_cases_is_said_in_one_line() -> None:
    assert format_similar_cases([]).splitlines()[-1] == NO_CASES_LINE


def test_credit_only_mentions_members_of_the_asking_server() -> None:
    here = format_similar_cases([case(scope="shared")], guild_id=GUILD)
    elsewhere = format_similar_cases([case(scope="shared", guild_id=5)], guild_id=GUILD)
    unknown_server = format_similar_cases([case(scope="shared")])
    imported = format_similar_cases([case(source="openpath", author_id=None, scope="shared")])
    assert "(<@42>)" in here
    assert "<@" not in elsewhere and "another server" in elsewhere
    assert "<@" not in unknown_server
    assert "imported from openpath" in imported


def test_captions_cannot_mention_format_or_break_lines() -> None:
    caption = HOSTILE + "\n# heading\n> quote\n1. fake item"
    text = format_similar_cases([case(1, caption=caption, author_id=None)])
    assert len(text.splitlines()) == 2
    assert live_mentions(text) == []
    for raw in ("**bold**", "__u__", "~~s~~", "`c`", "||spoiler||", "[x](https://evil)"):
        assert raw not in text
    assert "\\*\\*bold\\*\\*" in text  # shown literally, not dropped


def test_long_captions_are_truncated_at_a_word() -> None:
    caption = "word " * 200
    line = format_similar_cases([case(caption=caption)]).splitlines()[1]
    assert "word word…" in line
    assert len(line) < 300


def test_odd_links_are_left_out() -> None:
    for link in ("javascript:alert(1)", "https://x.test/a)b", "https://x.test/a b", "http://plain.test"):
        assert "[jump]" not in format_similar_cases([case(link=link)])


# ---------------------------------------------------------------- whole answers


def assert_complete(answer: AnswerText, *, model: str | None = PLIP_LINE) -> None:
    assert len(answer.content) <= MAX_CONTENT_CHARS
    assert DISCLAIMER in answer.content
    if model is not None:
        assert model in answer.content.splitlines()
    assert live_mentions(answer.content.replace("(<@42>)", "")) == []


def test_a_full_answer_has_every_part_in_order() -> None:
    answer = compose_answer(
        prediction(), [case(1), case(2)], label_set_name="colon", image_name="slide 1.png"
    )
    assert_complete(answer)
    content = answer.content
    assert (
        content.index("slide 1.png") < content.index("1. **adenocarcinoma**") < content.index("Similar cases")
    )
    assert content.rstrip().endswith(f"*{DISCLAIMER}*")
    assert (answer.cases_shown, answer.cases_total, answer.labels_shown, answer.uncertain) == (2, 2, 3, False)


def test_partial_answers_keep_the_disclaimer() -> None:
    no_search = compose_answer(prediction(uncertain=True), None, label_set_name="c", image_name="a.png")
    assert_complete(no_search)
    assert "Similar cases" not in no_search.content
    assert UNCERTAIN_LINE in no_search.content and no_search.uncertain
    empty_corpus = compose_answer(prediction(), [], label_set_name="c", image_name="a.png")
    assert NO_CASES_LINE in empty_corpus.content
    search_only = compose_answer(None, [case()], label_set_name="c", image_name="a.png")
    assert_complete(search_only, model=None)
    assert "Suggested labels" not in search_only.content


def test_many_long_cases_are_cut_first_and_the_numbering_still_matches() -> None:
    cases = [case(i, caption=f"case {i} " + "very long caption " * 300) for i in range(1, 51)]
    answer = compose_answer(prediction(uncertain=True), cases, label_set_name="colon", image_name="x.png")
    assert_complete(answer)
    assert UNCERTAIN_LINE in answer.content
    assert 0 < answer.cases_shown < 50 and answer.cases_total == 50
    numbered = re.findall(r"^(\d+)\. \d\.\d\d — case", answer.content, flags=re.MULTILINE)
    assert [int(n) for n in numbered] == list(range(1, answer.cases_shown + 1))
    assert f"…and {50 - answer.cases_shown} more not shown." in answer.content
    assert answer.labels_shown == 3  # labels are only cut when cases alone cannot make room


def test_hostile_worst_case_still_fits_with_disclaimer_and_model_line() -> None:
    labels = [("*@" * 50)[: 99 - len(str(i))] + str(i) for i in range(10)]
    hostile_local = ModelIdentity("local", "local checkpoint " + "_" * 300, "/p", "sha256:" + "f" * 64)
    answer = compose_answer(
        prediction(labels, [0.1] * 10, uncertain=True, model=hostile_local),
        [case(i, caption=HOSTILE * 20) for i in range(100)],
        label_set_name="@here" * 40,
        image_name="<@1>" * 100,
    )
    assert_complete(answer, model=None)
    assert model_line(hostile_local) in answer.content.splitlines()
    assert "not PLIP" in answer.content
    assert answer.labels_shown >= 1


def test_random_answers_always_fit() -> None:
    rng = random.Random(0)
    alphabet = "ab *_~`|<>@[]()#\n\\é漢"
    for _ in range(200):
        n_labels = rng.randint(1, 12)
        labels = [f"{i}" + "".join(rng.choices(alphabet, k=rng.randint(0, 98))) for i in range(n_labels)]
        cases = [
            case(
                i,
                caption="".join(rng.choices(alphabet, k=rng.randint(0, 3000))),
                link=rng.choice([None, "https://d.test/1"]),
            )
            for i in range(rng.randint(0, 30))
        ]
        answer = compose_answer(
            prediction(labels, [1 / n_labels] * n_labels, uncertain=rng.random() < 0.5),
            cases,
            label_set_name="".join(rng.choices(alphabet, k=rng.randint(0, 200))),
            image_name="".join(rng.choices(alphabet, k=rng.randint(0, 500))),
        )
        assert_complete(answer)


# ---------------------------------------------------------------- errors and helpers


def test_errors_are_one_short_safe_line() -> None:
    text = format_error("Label 'x' appears twice.\n" + HOSTILE + " tail" * 200)
    assert "\n" not in text
    assert text.startswith("⚠️ Label 'x' appears twice.")
    assert len(text) < 700
    assert live_mentions(text) == []
    assert format_error("  ") == "⚠️ Something went wrong."


def test_truncate_and_escape_helpers() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("a" * 20, 10) == "a" * 9 + "…"
    assert len(truncate("one two three four five", 12)) <= 12
    assert escape_user_text("a_b") == "a\\_b"


# ---------------------------------------------------------------- text is literal, everywhere

HOSTILE_LABELS = [
    "$x^2$",
    r"$\frac{a$",  # broke matplotlib's math parser
    "**bold**",
    "__underline__",
    "~~struck~~",
    "@everyone",
    "@here",
    "<@123>",
    "<@&456>",
    "<#789>",
    "<t:0:R>",
    "`code`",
    "```block```",
    "||spoiler||",
    "[link](http://x)",
    "\\*escaped already\\*",
    "a\n# heading\n> quote\n-# subtext\n- item",
    "abc\u202edef",  # right-to-left override: would show "abcfed"
    "left\u2067right\u2069",  # isolate
    "zero\u200bwidth\u2060joiner\ufeff",
    "שלום עולם",  # RTL text itself is fine; only invisible controls go
    "x" * 500,
]

_INVISIBLE_CONTROLS = re.compile("[\u200b-\u200c\u200e\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def _displayed(text: str) -> str:
    """What Discord shows: backslash escapes undone, our zero-width mention breakers invisible."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")


_MARKUP = re.compile(r"\*\*|\*|__|_|\|\||`|~~|\]\(|<@|<#|<t:|@everyone|@here|^#|^>|^-# ", re.MULTILINE)


def markup(text: str) -> Counter[str]:
    """The markup Discord would interpret in `text`: escaped characters (backslash + one) are shown."""
    return Counter(_MARKUP.findall(re.sub(r"\\.", "", text)))


def _assert_literal(text: str) -> None:
    """No live markup, mention, mass ping or invisible control character in `text`."""
    assert live_mentions(text) == []
    assert not markup(text), f"live markup {markup(text)} in {text!r}"
    without_breakers = text.replace("@\u200b", "@")
    assert not _INVISIBLE_CONTROLS.search(without_breakers), "invisible control character left"


def _answer(label: str) -> str:
    return compose_answer(
        prediction([label, "b", "c"]),
        [case(1, caption=label), case(2)],
        label_set_name=label,
        image_name=label,
        guild_id=GUILD,
    ).content


@pytest.mark.parametrize("label", HOSTILE_LABELS)
def test_hostile_labels_are_literal_in_the_answer(label: str) -> None:
    """A hostile label, caption, set name and file name add no markup to the answer at all."""
    content = _answer(label)
    assert len(content) <= MAX_CONTENT_CHARS
    assert content.rstrip().endswith(f"*{DISCLAIMER}*")
    plain = _answer("plain label")
    assert markup(content) == markup(plain)
    assert live_mentions(content) == live_mentions(plain) == ["<@42>", "<@42>"]  # our credits only
    assert not _INVISIBLE_CONTROLS.search(content.replace("@\u200b", "@"))
    shown = one_line_visible(label)
    if len(shown) <= 60:  # short labels survive whole, readable once escapes are undone
        assert shown in _displayed(content)


def one_line_visible(text: str) -> str:
    return " ".join(_INVISIBLE_CONTROLS.sub("", text).split())


@pytest.mark.parametrize("query", HOSTILE_LABELS)
def test_text_search_echo_is_literal(query: str) -> None:
    content, shown = format_search_answer(query, [case(1, caption=query)], PLIP, guild_id=GUILD)
    assert shown == 1
    header = content.splitlines()[0]
    assert header.startswith("Cases matching “")
    _assert_literal(header)
    assert content.endswith(DISCLAIMER)
    assert PLIP_LINE in content
    if len(query) < 90:
        assert one_line_visible(query) in _displayed(header)


def test_text_search_answer_fits_and_matches_its_grid() -> None:
    long_cases = [case(n, caption="word " * 60) for n in range(1, 40)]
    content, shown = format_search_answer("q", long_cases, PLIP, guild_id=GUILD)
    assert len(content) <= MAX_CONTENT_CHARS
    assert content.endswith(DISCLAIMER)
    assert 0 < shown < len(long_cases)
    assert f"\n{shown}. " in content and f"\n{shown + 1}. " not in content
    empty, none = format_search_answer("q", [], PLIP, guild_id=GUILD)
    assert none == 0 and NO_CASES_LINE in empty


def test_label_set_listing_is_literal_and_bounded() -> None:
    text = format_label_set(HOSTILE_LABELS * 20, ["a photo of {}.", "**{}** @here"], "server")
    assert len(text) <= MAX_CONTENT_CHARS
    assert text.startswith("Labels (server): ")
    assert "more" in text.splitlines()[0]
    for line in text.splitlines():
        _assert_literal(line)
    assert format_label_set(["a", "b"], [], "channel") == "Labels (channel): a, b\nTemplates: (model default)"


def test_one_line_drops_invisible_controls_but_keeps_emoji_joiners() -> None:
    assert one_line("abc\u202edef") == "abcdef"
    assert one_line("a\u200bb\u2066c\u2069") == "abc"
    family = "\U0001f468\u200d\u2695\ufe0f"  # health worker: joiner kept
    assert one_line(family) == family


def test_a_picture_that_cannot_be_drawn_leaves_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bytes:
        raise ValueError("label $secret patient name$ cannot be parsed")

    assert rendered("suggestions.png", broken) == []
    assert "secret" not in caplog.text  # only the exception type is logged
    assert "ValueError" in caplog.text
    assert rendered("ok.png", lambda: b"png") == [ReplyFile("ok.png", b"png")]
