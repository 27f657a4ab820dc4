"""Shared fixtures: isolated settings and locally built (random) checkpoints.

Every test runs with its own data directory and with Hugging Face downloads off, so nothing reads or
writes the developer's caches and nothing tries the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoints import TINY, VIT_B_32, make_hf_clip


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("PLIPBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PLIPBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny CLIPModel (content-dominant) saved with save_pretrained: NOT PLIP."""
    directory = tmp_path_factory.mktemp("ckpt") / "tiny-random-clip"
    make_hf_clip(directory, TINY, seed=0, content_dominant=True)
    return directory


@pytest.fixture(scope="session")
def vit_b32_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIPModel with PLIP's exact shape (ViT-B/32, 512-d): NOT PLIP."""
    directory = tmp_path_factory.mktemp("ckpt") / "random-vit-b-32"
    make_hf_clip(directory, VIT_B_32, seed=1)
    return directory
