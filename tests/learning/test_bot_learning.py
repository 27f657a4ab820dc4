"""The text moderators and members read about learning (no Discord needed)."""

from __future__ import annotations

import io

from PIL import Image

from bot.learning import label_set_test_reply
from bot.reply import adapted_line, compose_answer
from model.identity import ModelIdentity
from model.zeroshot import Prediction, Suggestion
from workers.learning_contracts import EvalScores, LearningTestResult

MODEL = ModelIdentity(name="local", title="local checkpoint tiny", source="/x", revision="sha256:ab12cd34")


def prediction() -> Prediction:
    ranked = (Suggestion("tumor", 0.7), Suggestion("normal", 0.3))
    return Prediction(ranked, False, 0.4, 0.5, MODEL, ranked)


def test_answers_say_when_examples_changed_them() -> None:
    plain = compose_answer(prediction(), None, label_set_name="custom", image_name="a.png").content
    adapted = compose_answer(
        prediction(), None, label_set_name="custom", image_name="a.png", adapted_examples=4
    ).content
    assert "Adapted with" not in plain
    assert "Adapted with 4 confirmed examples from this server." in adapted
    assert adapted.index("Adapted with") < adapted.index("Model:")  # beside the labels it changed
    assert adapted_line(1) == "Adapted with 1 confirmed example from this server."


def test_label_set_test_reply_has_scores_and_two_confusion_pngs() -> None:
    scores = EvalScores(weighted_f1=0.5, accuracy=0.5, confusion=[[1, 1], [1, 1]])
    better = EvalScores(weighted_f1=1.0, accuracy=1.0, confusion=[[2, 0], [0, 2]])
    result = LearningTestResult(
        labels=["tumor", "*bold*"],
        examples=4,
        ignored=1,
        counts=[2, 2],
        zero_shot=scores,
        adapted=better,
        active=True,
        reason="leave-one-out accuracy 100% vs zero-shot 50%",
    )
    reply = label_set_test_reply(result)
    assert "weighted F1 **0.500**" in reply.content and "weighted F1 **1.000**" in reply.content
    assert "1 example(s) of labels outside this set" in reply.content
    assert "\\*bold\\*" in reply.content  # label text is shown literally
    assert "use the adapter now" in reply.content
    assert [f.filename for f in reply.files] == ["confusion-zero-shot.png", "confusion-adapted.png"]
    for file in reply.files:
        with Image.open(io.BytesIO(file.data)) as image:
            assert image.format == "PNG" and image.width > 300


def test_label_set_test_without_examples_says_so() -> None:
    empty = LearningTestResult(
        labels=["tumor"],
        examples=0,
        ignored=0,
        counts=[0],
        reason="No confirmed examples of these labels yet.",
    )
    reply = label_set_test_reply(empty)
    assert "No confirmed examples" in reply.content and reply.files == ()


def test_chart_marks_the_labels_that_moved() -> None:
    from bot import render

    plain = Image.open(io.BytesIO(render.probability_chart(prediction()))).convert("RGB")
    marked = Image.open(io.BytesIO(render.probability_chart(prediction(), moved={"tumor": 0.31})))
    marked = marked.convert("RGB")
    assert plain.size == marked.size
    colour = tuple(int(render.MOVED_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    assert colour not in set(plain.getdata())
    assert colour in set(marked.getdata())  # the moved label is drawn in its own colour
