"""Settings: one pydantic-settings model, built by `load_settings()` at the composition root.

Environment prefix `PLIPBOT_`, nested sections with `__` (e.g. `PLIPBOT_MODEL__NAME=plip`), and an
optional `.env` file. Nothing here is read at import time: tests and commands build their own
`Settings` so that no global state leaks between them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]


def default_data_dir() -> Path:
    """XDG data dir, so caches and the embedded store survive across runs without configuration."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "plipbot"


class ModelSettings(BaseModel):
    """Which encoder answers, and how it runs."""

    name: str = Field("plip", description="Registry name (plip, clip, quiltnet) or a local checkpoint path.")
    precision: Precision = Field(
        "auto",
        description="auto (fastest safe choice: fp16 on GPU, bf16 on CPUs with native bf16, else fp32), "
        "fp32 (reference), bf16, fp16 (GPU only), int8 (CPU, experimental, opt-in).",
    )
    device: str = Field("auto", description="auto (cuda when present, else cpu), cpu, cuda, cuda:N.")
    batch_size: int = Field(32, ge=1, le=1024, description="Images or prompts per forward pass.")
    offline: bool = Field(
        False, description="Never try to download weights (also honoured: HF_HUB_OFFLINE=1)."
    )


class ZeroShotSettings(BaseModel):
    """How suggestions are presented."""

    top_k: int = Field(3, ge=1, le=50, description="Suggestions shown per image.")
    uncertain_margin: float = Field(
        0.15, ge=0, le=1, description="Top-1 minus top-2 probability below which an answer is 'uncertain'."
    )
    uncertain_entropy: float = Field(
        0.9, ge=0, le=1, description="Normalised entropy above which an answer is 'uncertain'."
    )


class StoreSettings(BaseModel):
    """Vector store: embedded qdrant-edge by default, a Qdrant server when `url` is set."""

    url: str | None = Field(
        None, description="Qdrant server URL (http://qdrant:6333); unset = embedded store."
    )
    api_key: str | None = Field(None, description="Qdrant API key, if the server requires one.")
    timeout_s: float = Field(10.0, gt=0, description="Per-request timeout against the Qdrant server.")


class LedgerSettings(BaseModel):
    """Consent ledger database."""

    url: str | None = Field(
        None, description="SQLAlchemy URL (postgresql+psycopg://...); unset = SQLite under the data dir."
    )


class IngestSettings(BaseModel):
    """Limits and gates for what enters the corpus."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest accepted file, in bytes.")
    max_pixels: int = Field(64_000_000, ge=10_000, description="Decompression-bomb guard, in pixels.")
    decode_concurrency: int = Field(
        2, ge=1, description="Images one process decodes at once (each may take up to ~300 MiB)."
    )
    fetch_timeout_s: float = Field(15.0, gt=0, description="Time-out for downloading an attachment.")
    gate_threshold: float = Field(
        0.5, ge=0, le=1, description="Minimum 'pathology image' probability for the ingest gate."
    )
    duplicate_cosine: float = Field(
        0.95, ge=0, le=1, description="Image cosine at or above which a post is a repost."
    )
    ocr: bool = Field(
        True,
        description="Read text burned into images (slide labels, forms) with Tesseract and hold the post "
        "if it looks like an identifier.",
    )
    ocr_timeout_s: float = Field(5.0, gt=0, description="Time limit for reading one image's text.")
    ocr_max_side: int = Field(
        1400, ge=200, description="Images are reduced to this many pixels on the longer side before OCR."
    )
    ocr_unavailable: Literal["hold", "skip"] = Field(
        "hold",
        description="When Tesseract is missing, fails or times out: hold the post for a moderator, or "
        "ingest it without screening its image text.",
    )


class DiscordSettings(BaseModel):
    """Discord connection; the URLs are settings so a REST proxy (or a test server) can stand in."""

    token: str | None = Field(None, description="Bot token.")
    api_base: str = Field("https://discord.com/api/v10", description="REST base URL.")
    gateway_url: str = Field("wss://gateway.discord.gg/", description="Gateway URL.")
    message_content_intent: bool = Field(
        False,
        description="Request the privileged Message Content intent (needed only to ingest posts that "
        "do not mention the bot); mentions and slash commands work without it.",
    )
    guild_ready_timeout_s: float = Field(2.0, ge=0, description="Wait for guilds at start-up before ready.")
    cooldown_user_s: float = Field(5.0, ge=0, description="Seconds between two requests of one user.")
    cooldown_channel_s: float = Field(1.0, ge=0, description="Seconds between two requests in one channel.")
    max_images: int = Field(4, ge=1, le=10, description="Images answered per message (the rest are skipped).")
    similar_cases: int = Field(3, ge=0, le=12, description="Similar cases shown per image (0: none).")
    sync_guild_id: int | None = Field(
        None, description="Sync slash commands to this server only (instant, for testing); unset = global."
    )
    erasure_sweep_s: float = Field(
        300.0,
        ge=0,
        description="How often the bot retries withdrawals a store failure cut short and tells users "
        "whose erasure finished (0: never).",
    )


class WorkerSettings(BaseModel):
    """Task queue: queue names, limits and micro-batching (workers/app.py says why each matters)."""

    gpu_queue: str = Field("gpu", description="Queue for model work (suggest, embed, search).")
    ingest_queue: str = Field("ingest", description="Queue for corpus writes (ingest, withdraw).")
    concurrency: int = Field(8, ge=1, le=256, description="Tasks in flight per worker by default.")
    prefetch_multiplier: int = Field(1, ge=1, description="Messages reserved per task slot (1: fair).")
    soft_time_limit_s: float = Field(30.0, gt=0, description="A task past this returns a timeout error.")
    time_limit_s: float = Field(60.0, gt=0, description="A prefork child still running is killed.")
    visibility_timeout_s: float = Field(
        300.0, gt=0, description="Redis broker: an unacknowledged message is redelivered after this long."
    )
    restore_interval_s: float = Field(10.0, gt=0, description="How often workers look for such messages.")
    result_expires_s: int = Field(
        300, ge=60, description="Results not collected by their caller are deleted after this long."
    )
    client_timeout_s: float = Field(30.0, gt=0, description="How long a caller waits for a result.")
    connect_timeout_s: float = Field(2.0, gt=0, description="Connecting to Redis (broker, results, blobs).")
    publish_retries: int = Field(2, ge=0, description="Send retries before the broker counts as down.")
    batch_window_ms: float = Field(10.0, ge=0, description="Longest wait for images to share a batch.")
    batch_max: int = Field(32, ge=1, le=1024, description="Most images in one micro-batch.")
    blob_url: str | None = Field(None, description="Redis for uploads; default: the result backend.")
    blob_ttl_s: int = Field(900, ge=10, description="Uploaded bytes live this long.")
    key_prefix: str = Field("", description="Prefix for every Redis key and queue (to share a Redis).")
    embedded_threads: int = Field(4, ge=1, le=64, description="Task threads in embedded (no broker) mode.")
    allow_file_urls: bool = Field(False, description="Tasks may read file:// image URLs (trusted callers).")
    allow_private_urls: bool = Field(
        False, description="Tasks may fetch links on loopback or private addresses (tests, intranets)."
    )


class ObservabilitySettings(BaseModel):
    """Logs and metrics of long-running processes (plipbot/observability.py)."""

    log_format: Literal["json", "text"] = Field(
        "text", description="text (for people) or json (one object per line, for log collectors)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged by the bot and workers."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve Prometheus metrics on this port; unset = off."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the metrics endpoint binds (0.0.0.0 inside a container)."
    )


class LearningSettings(BaseModel):
    """Learning from a server's confirmed examples (a Tip-Adapter cache per server and label set)."""

    enabled: bool = Field(
        True, description="Let confirmed examples adapt answers at all (servers still switch it per channel)."
    )
    margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Leave-one-out accuracy the adapter must gain over zero-shot on a server's examples.",
    )
    min_examples_per_label: int = Field(
        2, ge=1, le=100, description="Examples every label needs before learning starts by itself."
    )
    max_examples: int = Field(
        1000, ge=2, le=20000, description="Newest examples per server the adapter uses (bounds its cost)."
    )


class Settings(BaseSettings):
    """All of plipbot's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="PLIPBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Field(
        default_factory=default_data_dir, description="Caches, weights and embedded stores."
    )
    broker_url: str | None = Field(
        None, description="Celery broker (redis://127.0.0.1:6379/0); unset = in-process."
    )
    result_backend_url: str | None = Field(
        None, description="Celery result backend; defaults to the broker URL."
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    zeroshot: ZeroShotSettings = Field(default_factory=ZeroShotSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)

    @property
    def models_dir(self) -> Path:
        """Downloaded and converted weights."""
        return self.data_dir / "models"

    @property
    def thumbnails_dir(self) -> Path:
        """Case thumbnails (a mounted volume in production)."""
        return self.data_dir / "thumbnails"

    @property
    def cache_dir(self) -> Path:
        """Derived data that can be rebuilt (text-embedding caches)."""
        return self.data_dir / "cache"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and `.env`; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
