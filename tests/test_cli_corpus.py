"""`plipbot ingest | search | consent | forget` on the embedded store, as an operator runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.pipeline import PostImage
from plipbot.cli import main
from plipbot.composition import Container
from plipbot.settings import load_settings
from store.ids import case_point_id
from tests.imagegen import encode, ihc, noise, png_claiming_size, texture

GUILD = 1001


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def import_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "atlas"
    (folder / "colon").mkdir(parents=True)
    base = ihc()
    for i, (x, y) in enumerate(((0, 0), (300, 0), (0, 300))):
        (folder / "colon" / f"case{i}.png").write_bytes(encode(base.crop((x, y, x + 200, y + 200))))
    (folder / "texture.jpg").write_bytes(encode(texture(seed=4), "JPEG"))
    (folder / "noise.png").write_bytes(encode(noise((200, 200))))
    good = encode(base.crop((200, 200, 400, 400)))
    (folder / "broken.png").write_bytes(good[: len(good) // 3])
    (folder / "bomb.png").write_bytes(png_claiming_size(50000, 50000))
    (folder / "notes.png").write_text("MRN 12345678, not an image at all")
    (folder / ".hidden.png").write_bytes(good)
    lines = [
        {
            "image": "colon/case0.png",
            "caption": "Colorectal adenocarcinoma, cribriform",
            "tags": ["gi", "crc"],
        },
        {"image": "colon/case1.png", "caption": "Normal colonic mucosa"},
        {"image": "colon/case2.png", "caption": "Call 555-867-5309 for the slides"},
        {"image": "texture.jpg", "caption": "Mucin pool"},
        {"image": "noise.png", "caption": ""},
        {"image": "broken.png", "caption": "truncated upload"},
        {"image": "bomb.png", "caption": "huge"},
        {"image": "notes.png", "caption": "notes"},
    ]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return folder


def ingest_argv(tiny: Path, folder: Path, *extra: str) -> list[str]:
    return [
        "ingest",
        str(folder),
        "--model",
        str(tiny),
        "--source",
        "atlas",
        "--skip-gate",
        "--no-progress",
        *extra,
    ]


def test_bulk_import_summary_resume_and_search(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, import_dir: Path, tmp_path: Path
) -> None:
    captions = str(tmp_path / "captions.jsonl")
    code, out, _ = run(
        capsys,
        *ingest_argv(tiny_checkpoint, import_dir, "--captions", captions, "--scope", f"server:{GUILD}"),
    )
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == "ingested 4, duplicates 0, rejected 4, held for review 0"
    problems = "\n".join(lines[1:])
    assert "colon/case2.png: rejected: caption contains a likely identifier (phone)" in problems
    assert (
        "broken.png: rejected:" in problems
        and "bomb.png: rejected:" in problems
        and "notes.png: rejected:" in problems
    )
    assert "local checkpoint" in out

    code, out, _ = run(
        capsys,
        *ingest_argv(tiny_checkpoint, import_dir, "--captions", captions, "--scope", f"server:{GUILD}"),
    )
    assert code == 0 and out.splitlines()[0].endswith("(resumed: 8 already done in an earlier run)")

    code, out, _ = run(
        capsys,
        "search",
        "--model",
        str(tiny_checkpoint),
        "--text",
        "adenocarcinoma",
        "--guild",
        str(GUILD),
        "--k",
        "3",
        "--json",
    )
    assert code == 0
    results = json.loads(out)
    assert 1 <= len(results) <= 3
    for hit in results:
        assert {"id", "score", "caption", "source", "link"} <= hit.keys() and hit["source"] == "atlas"
    code, out, _ = run(
        capsys,
        "search",
        "--model",
        str(tiny_checkpoint),
        "--image",
        str(import_dir / "colon/case0.png"),
        "--json",
    )
    assert code == 0 and json.loads(out) == []  # no --guild: shared cases only, and these are server-private
    code, out, _ = run(
        capsys,
        "search",
        "--model",
        str(tiny_checkpoint),
        "--image",
        str(import_dir / "colon/case0.png"),
        "--guild",
        str(GUILD),
        "--json",
    )
    top = json.loads(out)[0]
    assert top["caption"] == "Colorectal adenocarcinoma, cribriform" and top["score"] > 0.99
    code, out, _ = run(
        capsys,
        "search",
        "--model",
        str(tiny_checkpoint),
        "--image",
        str(import_dir / "colon/case0.png"),
        "--guild",
        str(GUILD),
        "--captions",
        "--json",
    )
    assert code == 0 and all(hit["caption"] for hit in json.loads(out))  # image->text: only captioned cases


def test_import_without_captions_file_csv_and_shared_scope(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, import_dir: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("image,caption,tags\ncolon/case0.png,Adenocarcinoma,gi;crc\ncolon/case1.png,Mucosa,\n")
    code, out, _ = run(
        capsys, *ingest_argv(tiny_checkpoint, import_dir, "--captions", str(csv), "--scope", "shared")
    )
    assert code == 0 and out.startswith("ingested 2,")
    code, out, _ = run(
        capsys,
        "search",
        "--model",
        str(tiny_checkpoint),
        "--image",
        str(import_dir / "colon/case1.png"),
        "--json",
    )
    assert json.loads(out)[0]["caption"] == "Mucosa"  # shared: visible without a server
    code, out, _ = run(capsys, *ingest_argv(tiny_checkpoint, import_dir, "--scope", "server:7"))  # every file
    assert code == 0 and "ingested 5" in out.splitlines()[0]  # hidden files are skipped, bad ones rejected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scope", "everyone"], "--scope must be 'shared' or 'server:ID'"),
        (["--scope", "shared", "--captions", "/nope.jsonl"], "no such captions file"),
    ],
)
def test_ingest_usage_errors(
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tiny_checkpoint: Path,
    import_dir: Path,
) -> None:
    code, _, err = run(capsys, *ingest_argv(tiny_checkpoint, import_dir, *extra))
    assert code == 2 and message in err and err.count("\n") == 1


def test_consent_cli_and_forget_remove_every_trace(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    settings = load_settings(model={"name": str(tiny_checkpoint)}, ingest={"gate_threshold": 0.0})
    code, out, _ = run(capsys, "consent", "grant", "--user", "11", "--guild", str(GUILD), "--scope", "server")
    assert code == 0 and "consents" in out
    container = Container(settings)
    base = ihc()
    posts = [
        PostImage(
            point_id=case_point_id(GUILD, 100 + i, 1),
            guild_id=GUILD,
            author_id=11,
            message_id=100 + i,
            image=encode(base.crop((x, 0, x + 200, 200))),
            created_at=datetime.now(UTC),
            caption=f"case {i}",
        )
        for i, x in enumerate((0, 300))
    ]
    assert [r.outcome.value for r in container.ingest_pipeline.ingest(posts)] == ["ingested", "ingested"]
    thumbs = container.thumbnails
    assert len(list(thumbs.ids())) == 2
    container.close()  # the embedded store has one owner at a time

    code, out, _ = run(capsys, "consent", "status", "--user", "11", "--guild", str(GUILD))
    assert code == 0 and "server since" in out and "grant" in out
    # forget needs no model weights: run it with the default (uncached) PLIP configured
    code, out, err = run(capsys, "forget", "--user", "11")
    assert code == 0, err
    assert "2 case(s)" in out
    assert list(thumbs.ids()) == []
    code, out, _ = run(
        capsys, "search", "--model", str(tiny_checkpoint), "--text", "case", "--guild", str(GUILD), "--json"
    )
    assert json.loads(out) == []
    code, out, _ = run(capsys, "consent", "status", "--user", "11", "--guild", str(GUILD))
    assert "no active consent" in out and "delete" in out and "withdraw" in out


def test_consent_cli_narrowing_rescopes_the_shared_cases(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path
) -> None:
    """An operator narrowing a member's consent to 'server' takes their cases out of the shared corpus, as
    `/consent grant scope:server` does (searches check the server's sharing, not each member's scope)."""
    settings = load_settings(model={"name": str(tiny_checkpoint)}, ingest={"gate_threshold": 0.0})
    code, _, err = run(capsys, "consent", "grant", "--user", "11", "--guild", str(GUILD), "--scope", "shared")
    assert code == 0, err
    container = Container(settings)
    container.guild_config.set_sharing(GUILD, True, actor_id=1)
    post = PostImage(
        point_id=case_point_id(GUILD, 300, 1),
        guild_id=GUILD,
        author_id=11,
        message_id=300,
        image=encode(ihc().crop((0, 0, 200, 200))),
        created_at=datetime.now(UTC),
        caption="shared case",
    )
    [result] = container.ingest_pipeline.ingest([post])
    assert container.case_store.get([result.point_id])[0].payload.scope == "shared"
    container.close()  # the embedded store has one owner at a time

    code, _, err = run(capsys, "consent", "grant", "--user", "11", "--guild", str(GUILD), "--scope", "server")
    assert code == 0, err
    container = Container(settings)
    try:
        assert container.case_store.get([result.point_id])[0].payload.scope == "server"
    finally:
        container.close()
