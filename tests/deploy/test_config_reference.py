"""The configuration reference is generated from the settings model; README and .env.example must match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from plipbot.cli import main
from plipbot.cli_ops import (
    marked_section,
    render_env,
    render_markdown,
    settings_reference,
    valid_env_names,
)
from plipbot.errors import PlipbotError
from plipbot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIX = "run `.venv/bin/plipbot config-reference --write README.md` and commit the result"


def _leaf_names() -> set[str]:
    return {setting.env for section in settings_reference() for setting in section.settings}


def test_valid_names_walk_every_section() -> None:
    names = valid_env_names()
    assert {"PLIPBOT_DATA_DIR", "PLIPBOT_MODEL", "PLIPBOT_MODEL__NAME", "PLIPBOT_STORE__URL"} <= names
    assert "PLIPBOT_OBSERVABILITY__METRICS_PORT" in names
    for field_name, info in Settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            for leaf in info.annotation.model_fields:
                assert f"PLIPBOT_{field_name.upper()}__{leaf.upper()}" in names


def test_readme_reference_is_in_sync() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = marked_section(readme)
    assert section is not None, "README.md lacks the config-reference markers"
    assert section == render_markdown(), f"README.md's configuration reference is stale: {FIX}"


def test_env_example_is_in_sync() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert example == render_env(), (
        ".env.example is stale: run `.venv/bin/plipbot config-reference --format env --write .env.example`"
    )


def test_every_setting_is_listed_with_its_default() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    markdown = render_markdown()
    for setting in (s for section in settings_reference() for s in section.settings):
        assert f"`{setting.env}`" in markdown
        line = re.search(rf"^(?:# )?{setting.env}=(.*)$", example, flags=re.MULTILINE)
        assert line, f"{setting.env} missing from .env.example"
        assert line.group(1) == (setting.default or "")
    assert "# PLIPBOT_MODEL__NAME=plip" in example
    assert "# PLIPBOT_MODEL__OFFLINE=false" in example
    assert "| `PLIPBOT_WORKERS__CONCURRENCY` | integer, 1..256 | `8` |" in markdown


def test_env_example_activates_only_what_a_deployment_must_fill_in() -> None:
    active = [
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert sorted(active) == ["POSTGRES_PASSWORD"]  # the Discord token goes in .env.bot (bot only)
    # An active line must not override a default with a different value.
    assert all(
        not line.split("=", 1)[1]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )


def test_env_example_loads_as_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommenting every default gives the same settings as no file at all."""
    lines = []
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^# (PLIPBOT_[A-Z0-9_]+)=(.+)$", line)
        if match:
            lines.append(f"{match.group(1)}={match.group(2)}")
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    from_file = Settings().model_dump()
    (tmp_path / ".env").unlink()
    assert from_file == Settings().model_dump()


def test_computed_defaults_must_be_described() -> None:
    class Odd(BaseModel):
        when: str = Field(default_factory=lambda: "depends on the machine", description="x")

    class WithOdd(Settings):
        odd: Odd = Field(default_factory=Odd)

    with pytest.raises(PlipbotError, match="PLIPBOT_ODD__WHEN has a computed default"):
        settings_reference(WithOdd)
    assert "$XDG_DATA_HOME/plipbot" in render_markdown()
    assert str(Path.home()) not in render_markdown() + render_env()


def test_cli_prints_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == render_markdown()
    assert main(["config-reference", "--format", "env"]) == 0
    assert capsys.readouterr().out == render_env()

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- config-reference:start -->\nold\n<!-- config-reference:end -->\ntail\n")
    assert main(["config-reference", "--write", str(readme)]) == 0
    text = readme.read_text()
    assert marked_section(text) == render_markdown()
    assert text.startswith("# x\n") and text.endswith("<!-- config-reference:end -->\ntail\n")

    (tmp_path / "plain.md").write_text("no markers\n")
    assert main(["config-reference", "--write", str(tmp_path / "plain.md")]) == 2
    assert "markers" in capsys.readouterr().err


def test_leaves_are_unique_and_documented() -> None:
    leaves = [s for section in settings_reference() for s in section.settings]
    assert len({s.env for s in leaves}) == len(leaves)
    undocumented = [s.env for s in leaves if not s.meaning]
    assert not undocumented, f"settings without a description: {undocumented}"
    assert _leaf_names() <= valid_env_names()
