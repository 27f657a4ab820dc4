"""Weights resolution: local paths, the converted cache, offline errors and honest model names."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from model import registry as registry_module
from model.registry import REGISTRY
from model.weights import cached_registry_weights, resolve_weights, sha256_file
from plipbot.errors import UnknownModelError, WeightsMissingError


def test_local_checkpoint_is_converted_once_then_read_from_cache(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    first = resolve_weights(str(tiny_checkpoint), models)
    stamp = first.safetensors_path.stat().st_mtime_ns
    time.sleep(0.01)
    second = resolve_weights(str(tiny_checkpoint), models)
    assert second.safetensors_path == first.safetensors_path
    assert second.safetensors_path.stat().st_mtime_ns == stamp  # not converted again
    assert second.identity.revision == "sha256:" + sha256_file(tiny_checkpoint / "model.safetensors")


def test_registry_model_offline_and_uncached_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match="plipbot model fetch plip"):
        resolve_weights("plip", tmp_path / "models", offline=True)


def test_registry_model_without_network_fails_fast_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")  # nothing listens: the probe fails at once
    started = time.monotonic()
    with pytest.raises(WeightsMissingError) as info:
        resolve_weights("plip", tmp_path / "models")
    assert time.monotonic() - started < 5
    assert "\n" not in info.value.user_message and "unreachable" in info.value.user_message


@pytest.mark.parametrize("ref", ["nope", "./missing/dir", "/definitely/not/here"])
def test_unknown_model_names(ref: str, tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        resolve_weights(ref, tmp_path / "models")


def test_directory_without_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownModelError, match="not a checkpoint"):
        resolve_weights(str(tmp_path / "empty"), tmp_path / "models")


def test_local_copy_of_a_published_checkpoint_keeps_its_name(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only weights whose hash equals the published one may be called by the registry's name."""
    digest = sha256_file(tiny_checkpoint / "model.safetensors")
    pretend = dataclasses.replace(REGISTRY["plip"], weights_sha256={"model.safetensors": digest})
    monkeypatch.setitem(registry_module.REGISTRY, "plip", pretend)
    resolved = resolve_weights(str(tiny_checkpoint), tmp_path / "models")
    assert resolved.identity.title == "PLIP" and resolved.identity.verified
    monkeypatch.setitem(registry_module.REGISTRY, "plip", dataclasses.replace(pretend, weights_sha256={}))
    other = resolve_weights(str(tiny_checkpoint), tmp_path / "models2")
    assert other.identity.title.startswith("local checkpoint") and not other.identity.verified


def test_registry_pins_revisions_and_plip_architecture() -> None:
    plip = REGISTRY["plip"]
    assert plip.repo_id == "vinid/plip" and len(plip.revision or "") == 40
    assert plip.architecture == "ViT-B-32-quickgelu"
    assert plip.default_template == "An H&E image patch of {}."
    assert plip.preprocess.size == 224 and plip.preprocess.interpolation == "bicubic"
    assert len(REGISTRY["clip"].revision or "") == 40


def test_cached_registry_lookup_is_empty_on_a_fresh_machine(tmp_path: Path) -> None:
    assert cached_registry_weights("plip", tmp_path / "models") is None
