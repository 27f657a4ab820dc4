"""The Dockerfile against the package layout: what it copies exists, covers every package pyproject
installs, is not hidden by .dockerignore, pins torch like install.sh, runs as a non-root `plipbot`."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _copies(instructions: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context (not --from=stage)."""
    out = []
    for keyword, rest in instructions:
        if keyword != "COPY" or "--from=" in rest:
            continue
        parts = [p for p in rest.split() if not p.startswith("--")]
        out.append((parts[:-1], parts[-1]))
    return out


def test_multi_stage_build_with_a_non_root_runtime(instructions: list[tuple[str, str]]) -> None:
    stages = _stages(instructions)
    assert len(stages) >= 2
    names = [rest.split(" AS ")[-1].strip() for kw, rest in instructions if kw == "FROM"]
    assert names[-1] == "runtime" and "build" in names
    runtime = stages[-1]
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(kw == "COPY" and "--from=build" in rest for kw, rest in runtime)
    assert any(kw == "RUN" and "useradd" in rest and "plipbot" in rest for kw, rest in runtime)


def test_entrypoint_is_the_console_script(instructions: list[tuple[str, str]], pyproject: dict) -> None:
    entry = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["plipbot"]
    target = pyproject["project"]["scripts"]["plipbot"]
    module, _, function = target.partition(":")
    source = ROOT / (module.replace(".", "/") + ".py")
    assert source.is_file()
    assert re.search(rf"^def {function}\(", source.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_copies_cover_every_installed_package(instructions: list[tuple[str, str]], pyproject: dict) -> None:
    copied = {src.rstrip("/") for sources, _ in _copies(instructions) for src in sources}
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {pattern.rstrip("*").rstrip(".") for pattern in includes}
    for package in top_level:
        assert package in copied, f"pyproject installs {package}/ but the Dockerfile does not copy it"
        assert (ROOT / package).is_dir(), f"pyproject lists {package}, which does not exist"
        assert (ROOT / package / "__init__.py").is_file(), f"{package}/ is not a package"
    readme = pyproject["project"].get("readme")
    assert readme in copied, "pyproject's readme must be in the build context for `pip install .`"
    assert "pyproject.toml" in copied
    for package in pyproject["tool"]["setuptools"].get("package-data", {}):
        assert package in copied, f"package data of {package} would not reach the image"


def test_dockerignore_keeps_secrets_out_and_sources_in(instructions: list[tuple[str, str]]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = [p for p in patterns if not p.startswith("!")]
    for must in (".env", ".venv", ".git", "data"):
        assert must in excluded, f".dockerignore must exclude {must}"

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern.rstrip("/")) for prefix in prefixes for pattern in excluded
        )

    for sources, _ in _copies(instructions):
        for src in sources:
            assert not ignored(src.rstrip("/")), f"COPY {src} is excluded by .dockerignore"


def test_torch_is_pinned_like_install_sh_and_installed_first(instructions: list[tuple[str, str]]) -> None:
    install_sh = (ROOT / "install.sh").read_text(encoding="utf-8")
    torch = re.search(r'"torch==([^"]+)"', install_sh).group(1)
    vision = re.search(r'"torchvision==([^"]+)"', install_sh).group(1)
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    assert args["TORCH_VERSION"] == torch
    assert args["TORCHVISION_VERSION"] == vision
    runs = [rest for kw, rest in instructions if kw == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    package_step = next(i for i, r in enumerate(runs) if "pip install ." in r)
    assert torch_step < package_step
    assert '"torchvision==${TORCHVISION_VERSION}"' in runs[torch_step]


def test_weights_are_not_baked_in_unless_asked(instructions: list[tuple[str, str]]) -> None:
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    assert args["BAKE_MODEL"] == ""
    fetches = [rest for kw, rest in instructions if kw == "RUN" and "model fetch" in rest]
    assert fetches and all('if [ -n "${BAKE_MODEL}" ]' in rest for rest in fetches)
    env = " ".join(rest for kw, rest in instructions if kw == "ENV")
    assert "PLIPBOT_DATA_DIR=/data" in env
