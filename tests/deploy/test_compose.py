"""docker-compose.yml as a contract: services, pinned images, volumes, health, restarts, settings names.

No Docker engine runs here, so the file is parsed (PyYAML resolves the anchors and `<<` merges the way
Compose does) and checked against the code: every PLIPBOT_* name must be a real setting, every command
must parse with plipbot's own CLI parser, every interpolated variable must be documented.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from plipbot.cli import build_parser
from plipbot.cli_ops import valid_env_names
from plipbot.doctor import CHECK_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

INFRA = {"redis", "postgres", "qdrant", "prometheus"}
PLIPBOT_LONG_RUNNING = {"bot", "worker-gpu", "worker-cpu", "worker-ingest"}
ONE_SHOT = {"model-fetch"}
# A pinned tag names a release: digits with at least a minor version, never `latest`.
PINNED_TAG = re.compile(r"^[a-z0-9./_-]+:v?\d+\.\d+(\.\d+)?([-.][a-z0-9.]+)*$")
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:[:?-][^}]*)?\}")


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source for short-syntax volume mounts."""
    out = {}
    for mount in service.get("volumes", []):
        source, target = mount.split(":")[:2]
        out[target] = source
    return out


def _cli_args(command: list[str] | str) -> list[str]:
    """A compose command for the plipbot image as CLI arguments, defaults of ${VAR:-x} applied."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return [re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", arg) for arg in argv]


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert set(services) == INFRA | PLIPBOT_LONG_RUNNING | ONE_SHOT


def test_third_party_images_are_pinned(services: dict[str, Any]) -> None:
    for name in INFRA:
        image = services[name]["image"]
        assert PINNED_TAG.match(image), f"{name}: image {image!r} is not pinned to a release"
        assert not image.endswith((":latest", ":stable"))
    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", services["qdrant"]["image"])
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_plipbot_services_build_one_local_image(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in PLIPBOT_LONG_RUNNING | ONE_SHOT}
    assert len(images) == 1
    for name in PLIPBOT_LONG_RUNNING | ONE_SHOT:
        assert services[name]["build"]["context"] == "."
        assert (ROOT / "Dockerfile").is_file()


def test_every_service_has_a_healthcheck_and_a_restart_policy(services: dict[str, Any]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"
        expected = {"no"} if name in ONE_SHOT else {"unless-stopped", "always"}
        assert service.get("restart") in expected, f"{name}: restart {service.get('restart')!r}"


def test_named_volumes_hold_the_state(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    wanted = {
        "qdrant": "/qdrant/storage",
        "postgres": "/var/lib/postgresql/data",
        "redis": "/data",
    }
    for service, target in wanted.items():
        assert _mounts(services[service])[target] in declared, f"{service}: {target} is not a named volume"
    for name in PLIPBOT_LONG_RUNNING | ONE_SHOT:
        mounts = _mounts(services[name])
        assert mounts.get("/data/models") == "models", name
        assert mounts.get("/data/thumbnails") == "thumbnails", name
        assert _environment(services[name])["PLIPBOT_DATA_DIR"] == "/data"
    assert {"models", "thumbnails", "qdrant-storage", "postgres-data"} <= declared


def test_plipbot_names_in_the_file_are_real_settings(compose_text: str) -> None:
    valid = valid_env_names()
    used = set(re.findall(r"\bPLIPBOT_[A-Z0-9_]+", compose_text))
    assert used, "the compose file passes no settings?"
    unknown = sorted(used - valid)
    assert not unknown, f"not settings (typo, or a renamed field?): {unknown}"


def test_dependencies_point_at_the_compose_services(services: dict[str, Any]) -> None:
    env = _environment(services["bot"])
    assert env["PLIPBOT_BROKER_URL"].startswith("redis://redis:6379/")
    assert env["PLIPBOT_STORE__URL"] == "http://qdrant:6333"
    assert env["PLIPBOT_LEDGER__URL"].startswith("postgresql+psycopg://plipbot:${POSTGRES_PASSWORD")
    assert env["PLIPBOT_LEDGER__URL"].endswith("@postgres:5432/plipbot")
    postgres = _environment(services["postgres"])
    assert postgres["POSTGRES_USER"] == "plipbot" and postgres["POSTGRES_DB"] == "plipbot"


def test_no_secret_is_written_in_the_file(services: dict[str, Any], compose_text: str) -> None:
    for name, service in services.items():
        for key, value in _environment(service).items():
            if re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", key):
                blanked = key == "PLIPBOT_DISCORD__TOKEN" and value == ""
                assert value.startswith("${") or blanked, f"{name}: {key} must come from .env, not the file"
    for name in PLIPBOT_LONG_RUNNING | ONE_SHOT:
        assert ".env" in services[name]["env_file"]


def test_the_discord_token_reaches_the_bot_container_only(services: dict[str, Any]) -> None:
    """Workers never talk to Discord: the token is in .env.bot, which only the bot reads, and is
    blanked in every other plipbot container in case someone also put it in the shared .env."""
    bot = services["bot"]
    assert bot["env_file"] == [".env", ".env.bot"]
    assert "PLIPBOT_DISCORD__TOKEN" not in _environment(bot)
    for name in (PLIPBOT_LONG_RUNNING | ONE_SHOT) - {"bot"}:
        assert ".env.bot" not in services[name]["env_file"], name
        assert _environment(services[name]).get("PLIPBOT_DISCORD__TOKEN") == "", name
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert not re.search(r"^PLIPBOT_DISCORD__TOKEN=", example, flags=re.MULTILINE)
    bot_example = (ROOT / ".env.bot.example").read_text(encoding="utf-8")
    assert re.findall(r"^[A-Z][A-Z0-9_]*=", bot_example, flags=re.MULTILINE) == ["PLIPBOT_DISCORD__TOKEN="]
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env.*" in ignored and "!.env.example" in ignored


def test_interpolated_variables_are_documented_in_env_example(compose_text: str) -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    used = set(INTERPOLATION.findall(compose_text))
    assert "POSTGRES_PASSWORD" in used
    assert not sorted(used - documented), f"undocumented in .env.example: {sorted(used - documented)}"


def test_commands_parse_with_the_plipbot_cli(services: dict[str, Any]) -> None:
    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    expected = {
        "bot": ["run"],
        "worker-gpu": ["worker", "--queues", "gpu"],
        "worker-cpu": ["worker", "--queues", "gpu"],
        "worker-ingest": ["worker", "--queues", "ingest"],
        "model-fetch": ["model", "fetch", "plip"],
    }
    for name, argv in expected.items():
        assert _cli_args(services[name]["command"]) == argv, name
        if argv[0] not in registered:
            continue  # `plipbot run` arrives with bot/; checked below once it is registered
        parser.parse_args(argv)
    if "run" not in registered:
        pytest.skip("`plipbot run` is not registered yet (bot/ in progress); other commands checked")


def test_plipbot_healthchecks_run_doctor_with_valid_checks(services: dict[str, Any]) -> None:
    parser = build_parser()
    for name in PLIPBOT_LONG_RUNNING | ONE_SHOT:
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "plipbot"], name
        args = parser.parse_args(test[2:])
        assert args.command == "doctor"
        assert set(args.only.split(",")) <= set(CHECK_NAMES)
        # A healthcheck must not call Discord or load torch every minute.
        if name != "model-fetch":
            assert set(args.only.split(",")) == {"broker", "store", "ledger"}


def test_gpu_worker_reserves_an_nvidia_gpu_and_cpu_fallback_is_a_profile(services: dict[str, Any]) -> None:
    gpu = services["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["deploy"]["replicas"] == "${WORKER_GPU_REPLICAS:-1}"
    assert _environment(gpu)["PLIPBOT_MODEL__DEVICE"] == "cuda"
    cpu = services["worker-cpu"]
    assert cpu["profiles"] == ["cpu"]
    assert "deploy" not in cpu
    assert _environment(cpu)["PLIPBOT_MODEL__DEVICE"] == "cpu"
    assert services["prometheus"]["profiles"] == ["monitoring"]
    for name in set(services) - {"worker-cpu", "prometheus"}:
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"


def test_startup_order_waits_for_health_and_weights(services: dict[str, Any]) -> None:
    for name in PLIPBOT_LONG_RUNNING:
        depends = services[name]["depends_on"]
        for infra in ("redis", "qdrant", "postgres"):
            assert depends[infra] == {"condition": "service_healthy"}, name
        assert depends["model-fetch"] == {"condition": "service_completed_successfully"}, name
        # Workers and bot never download: model-fetch does, once.
        assert _environment(services[name])["PLIPBOT_MODEL__OFFLINE"].startswith(
            "${PLIPBOT_MODEL__OFFLINE:-true"
        )
    assert _environment(services["model-fetch"])["PLIPBOT_MODEL__OFFLINE"] == "false"


def test_only_loopback_ports_are_published(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is reachable from outside"


def test_prometheus_scrapes_every_plipbot_service(services: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == (ROOT / "deploy" / "prometheus.yml").resolve()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    sd = jobs["plipbot"]["dns_sd_configs"][0]
    assert set(sd["names"]) == PLIPBOT_LONG_RUNNING
    port = _environment(services["bot"])["PLIPBOT_OBSERVABILITY__METRICS_PORT"]
    assert port == f"${{PLIPBOT_OBSERVABILITY__METRICS_PORT:-{sd['port']}}}"


def test_qdrant_cluster_override(services: dict[str, Any]) -> None:
    """deploy/compose.qdrant-cluster.yml: three pinned, healthy nodes with cluster mode, shard and
    replica defaults, and plipbot waiting for all of them (collections are created with every node)."""
    text = (ROOT / "deploy" / "compose.qdrant-cluster.yml").read_text(encoding="utf-8")
    override = yaml.safe_load(text)["services"]
    nodes = {name: svc for name, svc in override.items() if name.startswith("qdrant")}
    assert set(nodes) == {"qdrant", "qdrant-1", "qdrant-2"}
    for name, node in nodes.items():
        assert node["image"] == services["qdrant"]["image"], f"{name}: same pinned Qdrant as the main file"
        env = _environment(node)
        assert env["QDRANT__CLUSTER__ENABLED"] == "true"
        assert env["QDRANT__STORAGE__COLLECTION__SHARD_NUMBER"] == "${QDRANT_SHARD_NUMBER:-6}"
        assert env["QDRANT__STORAGE__COLLECTION__REPLICATION_FACTOR"] == "${QDRANT_REPLICATION_FACTOR:-2}"
        assert node["healthcheck"]["test"] == services["qdrant"]["healthcheck"]["test"]
        assert node["restart"] == "unless-stopped"
        assert f"http://{name}:6335" in node["command"]
        if name != "qdrant":
            assert node["command"][1:3] == ["--bootstrap", "http://qdrant:6335"]
            assert _mounts(node)["/qdrant/storage"] == f"{name}-storage"
    for name in PLIPBOT_LONG_RUNNING:
        assert set(override[name]["depends_on"]) == {"qdrant-1", "qdrant-2"}
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for variable in set(INTERPOLATION.findall(text)):
        assert re.search(rf"^(?:# )?{variable}=", example, flags=re.MULTILINE), f"{variable} undocumented"
