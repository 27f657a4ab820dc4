"""Settings for a Container in embedded mode on a random checkpoint (NOT PLIP), shared by the tests that
run the real tasks in-process (and, through tests/bot/settings_for_fake.py, by the bot's e2e tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plipbot.settings import Settings


def embedded_settings(checkpoint: Path, data_dir: Path, **fields: Any) -> Settings:
    """The model at `checkpoint`, data in `data_dir`, and the ingest gate open (a random model cannot
    tell pathology from a selfie; the gate has tests of its own); `fields` add or replace Settings fields."""
    defaults: dict[str, Any] = {
        "data_dir": data_dir,
        "model": {"name": str(checkpoint)},
        "ingest": {"gate_threshold": 0.0},
    }
    return Settings(**{**defaults, **fields})
