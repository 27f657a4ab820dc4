"""Deterministic point ids, so that any ingest can be repeated without creating duplicates.

A point id is a UUID5 of what identifies the image at its source, in a namespace fixed for this
project: re-running an import or re-processing a Discord message overwrites the same point instead of
adding another, and withdrawal or deletion can recompute the id from the message alone. Never change
the namespace or the name formats below: every stored id would stop matching its source.
"""

from __future__ import annotations

import uuid
from pathlib import PurePath, PurePosixPath, PureWindowsPath

PLIPBOT_NAMESPACE = uuid.UUID("2bce062e-f66c-4048-b8c8-01c9506ca3de")
"""Fixed namespace of every plipbot point id (generated once; part of the storage format)."""


def case_point_id(guild_id: int, message_id: int, attachment_id: int) -> str:
    """Id of the case made from one attachment of one Discord message."""
    for label, value in (
        ("guild_id", guild_id),
        ("message_id", message_id),
        ("attachment_id", attachment_id),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be a non-negative integer snowflake, got {value!r}")
    return str(uuid.uuid5(PLIPBOT_NAMESPACE, f"discord:{guild_id}:{message_id}:{attachment_id}"))


def import_point_id(source: str, relative_path: str | PurePath) -> str:
    """Id of a bulk-imported image, from the import's source name and the file's path inside it.

    The path is normalised to forward slashes so that one import gives the same ids on any OS; it must
    be relative (an absolute path would tie ids to where the data happened to be mounted).
    """
    if not source or ":" in source:
        raise ValueError(f"source must be a non-empty name without ':', got {source!r}")
    text = relative_path if isinstance(relative_path, str) else relative_path.as_posix()
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(text).drive or ".." in posix.parts or not posix.parts:
        raise ValueError(f"relative_path must be a relative path inside the import, got {relative_path!r}")
    return str(uuid.uuid5(PLIPBOT_NAMESPACE, f"import:{source}:{posix.as_posix()}"))
