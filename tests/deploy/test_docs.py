"""docs/operations.md and the README's deployment sections say what operators need, and their numbers
(the Discord permissions integer, the commands, the files they name) are right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Discord permission bits (Discord's developer documentation, "Permissions").
PERMISSION_BITS = {
    "Send Messages": 11,
    "Send Messages in Threads": 38,
    "Create Public Threads": 35,
    "Attach Files": 15,
    "Embed Links": 14,
    "Read Message History": 16,
    "Use Application Commands": 31,
}
VIEW_CHANNEL = 10


@pytest.fixture(scope="module")
def operations() -> str:
    return (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def test_discord_permissions_integer_matches_the_listed_permissions(operations: str) -> None:
    integer = sum(1 << bit for bit in PERMISSION_BITS.values())
    for name in PERMISSION_BITS:
        assert f"| {name} |" in operations, f"{name} is not in the permissions table"
    assert f"**{integer}**" in operations
    assert f"permissions={integer}" in operations
    assert f"**{integer | (1 << VIEW_CHANNEL)}**" in operations


def test_discord_setup_covers_scopes_and_intents(operations: str) -> None:
    assert "scope=bot+applications.commands" in operations
    assert "**`bot`** and **`applications.commands`**" in operations
    for intent in ("Presence", "Server Members", "Message Content"):
        assert f"**{intent}**" in operations
    assert "*If you enable Message Content*" in operations
    assert "PLIPBOT_DISCORD__TOKEN" in operations


def test_operations_guide_covers_scaling_cluster_and_backups(operations: str) -> None:
    for needle in (
        "--scale worker-gpu=N",
        "QDRANT__CLUSTER__ENABLED=true",
        "QDRANT__STORAGE__COLLECTION__SHARD_NUMBER",
        "QDRANT__STORAGE__COLLECTION__REPLICATION_FACTOR",
        "deploy/qdrant-snapshot.sh backup",
        "deploy/qdrant-snapshot.sh restore",
        "pg_dump",
        "```mermaid",
        "plipbot doctor",
    ):
        assert needle in operations, needle
    # The files it sends people to exist.
    for path in set(re.findall(r"`((?:deploy|docs|bench)/[\w./-]+)`", operations)):
        assert (ROOT / path).exists(), f"docs/operations.md names {path}, which does not exist"


def test_sizing_numbers_follow_from_the_vectors(operations: str) -> None:
    per_case = 2 * 512 * 4 * 1.5  # two 512-d float32 vectors, Qdrant's x1.5 rule
    assert round(per_case / 1024) == 6
    assert "about 6 KiB of RAM per case" in operations
    # "more than half of RAM": 16 GiB -> ~1.4 M cases, 64 GiB -> ~5.5 M cases.
    assert round(16 * 2**30 / 2 / per_case / 1e6, 1) == 1.4
    assert round(64 * 2**30 / 2 / per_case / 1e6, 1) == 5.6
    assert "about 1.4 million cases on a 16 GiB host, 5.5 million on 64 GiB" in " ".join(operations.split())


def test_readme_ends_with_configuration_reference_and_deployment() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", readme, flags=re.MULTILINE)
    assert headings[-2:] == ["Configuration reference", "Deployment"]
    deployment = readme.split("## Deployment", 1)[1]
    assert "(docs/operations.md)" in deployment
