"""Bulk import for moderators and researchers: a folder of images plus an optional captions file.

Resumable: every finished image is appended to a journal under the data directory, and a rerun skips
what the journal already holds (point ids are deterministic, so re-processing the batch that was in
flight when the run died is harmless). One bad file never stops the import; the summary gives a
one-line reason for each rejected or held file.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingest.consent_ledger import ConsentScope
from ingest.pipeline import IngestPipeline, IngestResult, Outcome, PostImage
from plipbot.errors import InputFileError
from store.ids import import_point_id

PUBLIC_CORPUS_GUILD = 0
"""Guild id of imports into the shared corpus that belong to no server."""


@dataclass(frozen=True)
class ImportScope:
    """Where imported cases go: the shared public corpus, or one server's private corpus."""

    guild_id: int
    scope: ConsentScope

    @classmethod
    def parse(cls, text: str) -> ImportScope:
        """`shared` or `server:ID`."""
        if text == "shared":
            return cls(PUBLIC_CORPUS_GUILD, ConsentScope.SHARED)
        kind, _, value = text.partition(":")
        if kind == "server" and value.isdigit():
            return cls(int(value), ConsentScope.SERVER)
        raise InputFileError(f"--scope must be 'shared' or 'server:ID', not '{text}'.")


@dataclass(frozen=True)
class ImportEntry:
    """One image to import, with its caption and tags."""

    relative_path: str
    caption: str = ""
    tags: tuple[str, ...] = ()


@dataclass
class ImportSummary:
    """Counts per outcome and the reasons for everything not ingested."""

    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    resumed: int = 0

    def add(self, result: IngestResult) -> None:
        self.counts[result.outcome.value] += 1
        if result.outcome in (Outcome.REJECTED, Outcome.HELD):
            self.problems.append(f"{result.name}: {result.outcome.value}: {result.reason}")

    def lines(self) -> list[str]:
        """Human summary printed at the end of `plipbot ingest`."""
        c = self.counts
        head = (
            f"ingested {c['ingested']}, duplicates {c['duplicate']}, rejected {c['rejected']}, "
            f"held for review {c['held']}"
        )
        if self.resumed:
            head += f" (resumed: {self.resumed} already done in an earlier run)"
        return [head, *self.problems]


def read_captions(path: Path) -> list[ImportEntry]:
    """JSONL lines `{"image", "caption", "tags"}` or CSV columns `image,caption[,tags]` (tags split
    on `;` or `|`)."""
    if not path.is_file():
        raise InputFileError(f"{path}: no such captions file.")
    entries: list[ImportEntry] = []
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "image" not in reader.fieldnames:
                    raise InputFileError(f"{path}: the CSV needs a header with an 'image' column.")
                for row in reader:
                    tags = [t.strip() for t in (row.get("tags") or "").replace("|", ";").split(";")]
                    entries.append(
                        ImportEntry(row["image"], row.get("caption") or "", tuple(t for t in tags if t))
                    )
        else:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    entries.append(
                        ImportEntry(
                            str(obj["image"]), str(obj.get("caption") or ""), tuple(obj.get("tags") or ())
                        )
                    )
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise InputFileError(
                        f"{path}:{number}: not a JSON object with an 'image' field."
                    ) from err
    except UnicodeDecodeError as err:
        raise InputFileError(f"{path}: not UTF-8 text.") from err
    return entries


def discover_images(directory: Path) -> list[ImportEntry]:
    """Every regular, non-hidden file below `directory` (types are sniffed later, not guessed here)."""
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    return [ImportEntry(p.relative_to(directory).as_posix()) for p in files]


class ImportJournal:
    """Append-only record of finished files, so an interrupted import resumes where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    obj = json.loads(line)
                    self.done[obj["path"]] = obj["outcome"]
                except (json.JSONDecodeError, KeyError):
                    continue  # a line torn by a crash: that file is simply redone

    def record(self, relative_path: str, result: IngestResult) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(
                json.dumps({"path": relative_path, "outcome": result.outcome.value, "reason": result.reason})
                + "\n"
            )
        self.done[relative_path] = result.outcome.value


def journal_path(data_dir: Path, directory: Path, source: str, scope: ImportScope, collection: str) -> Path:
    """One journal per (folder, source, scope, model collection)."""
    key = hashlib.sha256(f"{directory.resolve()}|{source}|{scope}|{collection}".encode()).hexdigest()[:16]
    return data_dir / "imports" / f"{source}-{key}.jsonl"


def _batches(entries: list[ImportEntry], size: int) -> Iterator[list[ImportEntry]]:
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def run_import(
    pipeline: IngestPipeline,
    directory: Path,
    *,
    source: str,
    scope: ImportScope,
    journal: ImportJournal,
    entries: list[ImportEntry] | None = None,
    skip_gate: bool = False,
    batch_size: int = 32,
    actor_id: int = 0,
    progress: bool = True,
) -> ImportSummary:
    """Import `entries` (default: every file in `directory`) into the corpus; returns the summary."""
    if not directory.is_dir():
        raise InputFileError(f"{directory}: no such folder.")
    entries = entries if entries is not None else discover_images(directory)
    summary = ImportSummary()
    todo = [e for e in entries if e.relative_path not in journal.done]
    summary.resumed = len(entries) - len(todo)
    pipeline.sweep_orphan_thumbnails()
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc=f"import {source}")
    now = datetime.now(UTC)
    added = 0
    try:
        with pipeline.case_store.bulk_writes():
            for batch in _batches(todo, batch_size):
                posts = []
                for entry in batch:
                    try:
                        point_id = import_point_id(source, entry.relative_path)
                    except ValueError:
                        point_id = hashlib.sha256(entry.relative_path.encode()).hexdigest()
                    path = directory / entry.relative_path
                    posts.append(
                        PostImage(
                            point_id=point_id,
                            guild_id=scope.guild_id,
                            image=str(path),
                            created_at=now,
                            caption=entry.caption,
                            tags=entry.tags,
                            source=source,
                            scope=scope.scope,
                            name=entry.relative_path,
                        )
                    )
                results = _safe_ingest(pipeline, posts, skip_gate=skip_gate)
                for entry, result in zip(batch, results, strict=True):
                    journal.record(entry.relative_path, result)
                    summary.add(result)
                    added += result.outcome is Outcome.INGESTED
                bar.update(len(batch))
    finally:
        bar.close()
        if added:
            pipeline.consent_ledger.record_import(
                actor_id,
                scope.guild_id,
                scope.scope,
                source=source,
                points_added=added,
                detail={"folder": str(directory.resolve())},
            )
    return summary


def _safe_ingest(pipeline: IngestPipeline, posts: list[PostImage], *, skip_gate: bool) -> list[IngestResult]:
    """Run the pipeline on the posts whose path stays inside the import folder; refuse the others."""
    results: list[IngestResult | None] = [None] * len(posts)
    runnable = []
    for i, post in enumerate(posts):
        if ".." in Path(post.name).parts or Path(post.name).is_absolute():
            results[i] = IngestResult(
                post.point_id, Outcome.REJECTED, "path outside the import folder", name=post.name
            )
        else:
            runnable.append(i)
    for i, result in zip(
        runnable, pipeline.ingest([posts[i] for i in runnable], skip_gate=skip_gate), strict=True
    ):
        results[i] = result
    return [r for r in results if r is not None]
