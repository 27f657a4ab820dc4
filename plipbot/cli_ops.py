"""Operations commands: `plipbot doctor` and `plipbot config-reference`.

`config-reference` is generated from the settings model, so the README's reference table and
`.env.example` cannot drift from the code: tests/deploy compares both files with this output, and
`plipbot config-reference --write README.md` / `--format env --write .env.example` rewrite them.
"""

from __future__ import annotations

import argparse
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from plipbot.composition import Container
from plipbot.errors import InputFileError, PlipbotError
from plipbot.settings import Settings

ENV_PREFIX = "PLIPBOT_"
NESTED_DELIMITER = "__"
README_START = "<!-- config-reference:start -->"
README_END = "<!-- config-reference:end -->"

#: How defaults that are computed at run time are documented (a test fails on a computed default that
#: is missing here, so a new one cannot print the developer's own home directory).
DOC_DEFAULTS: dict[str, str] = {
    "PLIPBOT_DATA_DIR": "$XDG_DATA_HOME/plipbot, else ~/.local/share/plipbot",
}

#: Variables docker-compose.yml reads besides plipbot's settings: (name, default, meaning). An empty
#: default means .env.example shows an active, empty line to fill in; others are shown commented out.
COMPOSE_VARIABLES: tuple[tuple[str, str, str], ...] = (
    (
        "POSTGRES_PASSWORD",
        "",
        "Required. Password of the consent ledger's PostgreSQL user `plipbot`. It becomes part of "
        "PLIPBOT_LEDGER__URL, so use letters and digits only (e.g. `openssl rand -hex 24`).",
    ),
    (
        "COMPOSE_PROFILES",
        "-",
        "Extra services, comma-separated: cpu (CPU worker), monitoring (Prometheus).",
    ),
    (
        "WORKER_GPU_REPLICAS",
        "1",
        "GPU workers to run; 0 on a machine without an NVIDIA GPU (use the cpu profile).",
    ),
    ("APP_IMAGE", "plipbot:local", "Tag of the plipbot image that `docker compose build` makes."),
    (
        "TORCH_INDEX_URL",
        "-",
        "Build: pip index for torch/torchvision; unset = PyPI, whose Linux wheels are the CUDA builds. "
        "A CPU-only index makes a much smaller image.",
    ),
    (
        "BAKE_MODEL",
        "-",
        "Build: a registry model (e.g. plip) to download into the image; unset = volume only.",
    ),
    (
        "QDRANT_SHARD_NUMBER",
        "6",
        "Qdrant cluster (deploy/compose.qdrant-cluster.yml): shards per new collection; 2 x nodes.",
    ),
    (
        "QDRANT_REPLICATION_FACTOR",
        "2",
        "Qdrant cluster: copies of each shard; 2 survives the loss of one node.",
    ),
    (
        "QDRANT_WRITE_CONSISTENCY_FACTOR",
        "1",
        "Qdrant cluster: replicas that must confirm a write (at most the replication factor).",
    ),
    (
        "QDRANT_HOST_PORT",
        "6333",
        "Host port, on 127.0.0.1 only, for Qdrant's REST API (snapshots, dashboard).",
    ),
)

#: Settings .env.example shows as active lines (empty): what a deployment must fill in.
REQUIRED_FOR_DEPLOYMENT: frozenset[str] = frozenset()

#: Settings that must not be in the `.env` every container reads: docker-compose.yml gives
#: `.env.bot` (see `.env.bot.example`) to the bot container alone.
BOT_ONLY_SETTINGS = frozenset({"PLIPBOT_DISCORD__TOKEN"})


# ------------------------------------------------------------------------------------ the reference


@dataclass(frozen=True)
class SettingDoc:
    """One environment variable."""

    env: str
    type_text: str
    default: str | None  # as written in an env file; None = unset
    computed_default: str | None  # how a run-time default is described (DOC_DEFAULTS)
    meaning: str


@dataclass(frozen=True)
class SectionDoc:
    """The variables of one settings section (`key` "" is the top level)."""

    key: str
    description: str
    settings: tuple[SettingDoc, ...]

    @property
    def pattern(self) -> str:
        return f"{ENV_PREFIX}{self.key.upper()}{NESTED_DELIMITER}*" if self.key else f"{ENV_PREFIX}*"


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _bounds(metadata: list[Any]) -> str:
    low = high = ""
    for item in metadata:
        if getattr(item, "ge", None) is not None:
            low = f">= {item.ge}"
        elif getattr(item, "gt", None) is not None:
            low = f"> {item.gt}"
        if getattr(item, "le", None) is not None:
            high = f"<= {item.le}"
        elif getattr(item, "lt", None) is not None:
            high = f"< {item.lt}"
    if low.startswith(">=") and high.startswith("<="):
        return f"{low[3:]}..{high[3:]}"
    return ", ".join(part for part in (low, high) if part)


def type_text(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A short, human type: `integer, 1..1024`, `fp32 | bf16 | fp16`, `string`..."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        non_none = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(non_none) == 1:
            return type_text(non_none[0], metadata)
        return " or ".join(type_text(arg) for arg in non_none)
    if origin is Literal:
        return " | ".join(str(arg) for arg in get_args(annotation))
    names = {int: "integer", float: "number", str: "string", bool: "true/false", Path: "path"}
    base = names.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = _bounds(metadata or [])
    return f"{base}, {bounds}" if bounds else base


def env_value(value: Any) -> str:
    """A default as it would be written in an env file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
    for name, info in model.model_fields.items():
        yield f"{prefix}{name.upper()}", info


def settings_reference(model: type[BaseModel] = Settings) -> list[SectionDoc]:
    """Every setting of `model` as environment variables, grouped by section, in declaration order."""
    top: list[SettingDoc] = []
    sections: list[SectionDoc] = []
    for env, info in _walk(model, ENV_PREFIX):
        if _is_section(info.annotation):
            section_model = info.annotation
            key = env.removeprefix(ENV_PREFIX).lower()
            leaves = tuple(
                _setting_doc(leaf_env, leaf)
                for leaf_env, leaf in _walk(section_model, f"{env}{NESTED_DELIMITER}")
            )
            doc = (section_model.__doc__ or "").strip().splitlines()[0] if section_model.__doc__ else ""
            sections.append(SectionDoc(key, doc, leaves))
        else:
            top.append(_setting_doc(env, info))
    return [SectionDoc("", "Top level.", tuple(top)), *sections]


def _setting_doc(env: str, info: Any) -> SettingDoc:
    computed = None
    if info.default_factory is not None:
        if env not in DOC_DEFAULTS:
            raise PlipbotError(f"{env} has a computed default: describe it in cli_ops.DOC_DEFAULTS.")
        default = None
        computed = DOC_DEFAULTS[env]
    elif info.default is PydanticUndefined:
        default = None
        computed = "required"
    else:
        default = None if info.default is None else env_value(info.default)
    return SettingDoc(
        env=env,
        type_text=type_text(info.annotation, list(info.metadata)),
        default=default,
        computed_default=computed,
        meaning=(info.description or "").strip(),
    )


def valid_env_names(model: type[BaseModel] = Settings) -> set[str]:
    """Every environment variable the settings model reads: sections (as JSON) and their fields."""
    names: set[str] = set()
    for env, info in _walk(model, ENV_PREFIX):
        names.add(env)
        if _is_section(info.annotation):
            names.update(leaf for leaf, _ in _walk(info.annotation, f"{env}{NESTED_DELIMITER}"))
    return names


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(model: type[BaseModel] = Settings) -> str:
    """The README's configuration reference (what goes between the markers)."""
    lines = [
        "Generated from `plipbot/settings.py` by `plipbot config-reference`; a test fails when this "
        "section and the code differ (`plipbot config-reference --write README.md` updates it). Every "
        "setting is an environment variable (or a line in `.env`); nested sections use `__`.",
    ]
    for section in settings_reference(model):
        title = f"`{section.pattern}`" + (f": {section.description}" if section.key else " (top level)")
        lines += ["", f"### {title}", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
        for setting in section.settings:
            if setting.computed_default is not None:
                default = _md(setting.computed_default)
            elif setting.default is None:
                default = "unset"
            else:
                default = f"`{_md(setting.default)}`" if setting.default != "" else '`""`'
            lines.append(
                f"| `{setting.env}` | {_md(setting.type_text)} | {default} | {_md(setting.meaning)} |"
            )
    return "\n".join(lines) + "\n"


def _comment(text: str, width: int = 100) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width - 2, break_on_hyphens=False)]


def render_env(model: type[BaseModel] = Settings) -> str:
    """`.env.example`: the compose variables, then every setting with its default and meaning."""
    rule = "# " + "-" * 98
    lines = [
        "# plipbot configuration: every setting with its default and meaning, and what",
        "# docker-compose.yml reads. Generated by `plipbot config-reference --format env`;",
        "# a test keeps it in sync with plipbot/settings.py.",
        "#",
        "# Copy to `.env` next to docker-compose.yml (never commit `.env`). Commented lines show",
        "# defaults: uncomment a line to change it. docker-compose.yml itself sets PLIPBOT_DATA_DIR,",
        "# PLIPBOT_BROKER_URL, PLIPBOT_STORE__URL, PLIPBOT_LEDGER__URL and each worker's model",
        "# device (see docs/operations.md).",
        "",
        rule,
        "# docker compose",
        rule,
    ]
    for name, default, meaning in COMPOSE_VARIABLES:
        lines += _comment(meaning)
        shown = "" if default == "-" else default
        lines.append(f"{name}=" if default == "" else f"# {name}={shown}")
        lines.append("")
    for section in settings_reference(model):
        lines += [rule, f"# {section.pattern}" + (f": {section.description}" if section.key else ""), rule]
        for setting in section.settings:
            default_note = f"; default: {setting.computed_default}" if setting.computed_default else ""
            lines += _comment(f"{setting.meaning} [{setting.type_text}{default_note}]")
            if setting.env in BOT_ONLY_SETTINGS:
                lines += _comment("Not here: in .env.bot, which docker compose gives to the bot alone.")
            value = setting.default if setting.default is not None else ""
            active = setting.env in REQUIRED_FOR_DEPLOYMENT
            lines.append(f"{setting.env}={value}" if active else f"# {setting.env}={value}")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def replace_marked_section(text: str, body: str) -> str:
    """`text` with what lies between the config-reference markers replaced by `body`."""
    start = text.find(README_START)
    end = text.find(README_END)
    if start < 0 or end < start:
        raise InputFileError(f"No {README_START} ... {README_END} markers found.")
    return f"{text[: start + len(README_START)]}\n{body}{text[end:]}"


def marked_section(text: str) -> str | None:
    """What lies between the markers (without the newline after the start marker), or None."""
    start = text.find(README_START)
    end = text.find(README_END)
    if start < 0 or end < start:
        return None
    return text[start + len(README_START) : end].removeprefix("\n")


# ----------------------------------------------------------------------------------------- commands


def register(sub: Any) -> None:
    """Add `doctor` and `config-reference` to the parser."""
    from plipbot.doctor import CHECK_NAMES

    p = sub.add_parser("doctor", help="check every configured dependency, one line each")
    names = ",".join(CHECK_NAMES)
    p.add_argument("--only", metavar="CHECKS", help=f"comma-separated checks to run ({names})")
    p.add_argument("--skip", metavar="CHECKS", help="comma-separated checks to leave out")
    p.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="S",
        help="per-connection time-out in seconds (default 3)",
    )
    p.add_argument("--offline", action="store_true", help="do not call the Discord API (token presence only)")
    p.add_argument("--data-dir", type=Path, dest="data_dir", help="caches, weights and stores")
    p.set_defaults(func=run_doctor)

    p = sub.add_parser("config-reference", help="print every setting with its default and meaning")
    p.add_argument(
        "--format", choices=("markdown", "env"), default="markdown", help="README table or .env.example"
    )
    p.add_argument(
        "--write",
        type=Path,
        metavar="FILE",
        help="update FILE instead of printing (markdown: between the README markers; env: the whole file)",
    )
    p.set_defaults(func=run_config_reference)


def _check_list(raw: str | None, known: tuple[str, ...]) -> list[str] | None:
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise PlipbotError(f"Unknown check {', '.join(unknown)}; the checks are: {', '.join(known)}.")
    return names


def run_doctor(args: argparse.Namespace, container: Container) -> int:
    """`plipbot doctor`: one line per check; exit 1 when any check fails."""
    from plipbot.doctor import CHECK_NAMES, run_checks

    if args.timeout <= 0:
        raise PlipbotError("--timeout must be positive.")
    results = run_checks(
        container.settings,
        only=_check_list(args.only, CHECK_NAMES),
        skip=_check_list(args.skip, CHECK_NAMES) or (),
        timeout_s=args.timeout,
        offline=args.offline,
    )
    for result in results:
        print(result.line(), flush=True)
    return 1 if any(result.failed for result in results) else 0


def run_config_reference(args: argparse.Namespace, container: Container) -> int:
    """`plipbot config-reference`."""
    text = render_env() if args.format == "env" else render_markdown()
    if args.write is None:
        print(text, end="")
        return 0
    path: Path = args.write
    if args.format == "env":
        path.write_text(text, encoding="utf-8")
    else:
        if not path.is_file():
            raise InputFileError(f"{path}: no such file.")
        path.write_text(replace_marked_section(path.read_text(encoding="utf-8"), text), encoding="utf-8")
    print(f"wrote {path}")
    return 0
