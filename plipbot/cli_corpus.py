"""Corpus commands: `ingest` (bulk import), `search`, `consent grant|withdraw|status`, `forget`.

Operators run these against the same store the bot uses (embedded under PLIPBOT_DATA_DIR, or the
Qdrant server in PLIPBOT_STORE__URL). The embedded store has one owner at a time: stop a running
`plipbot run` first, or use a Qdrant server.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from plipbot.cli_model import add_model_flags, load_images_or_fail
from plipbot.composition import Container
from plipbot.errors import InputFileError

OPERATOR_ACTOR_ID = 0
"""Actor id recorded in the audit for changes made from the command line."""


def register(sub: Any) -> None:
    """Add this module's commands to the `plipbot` parser."""
    p = sub.add_parser("ingest", help="bulk-import a folder of images into the case corpus")
    add_model_flags(p)
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument("--captions", type=Path, metavar="FILE.jsonl|FILE.csv")
    p.add_argument("--source", required=True, help="name of this collection (e.g. pathpedia)")
    p.add_argument("--scope", required=True, help="shared | server:ID")
    p.add_argument("--skip-gate", action="store_true", help="trusted import: no pathology-image gate")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_ingest)

    p = sub.add_parser("search", help="nearest cases to an image or a text")
    add_model_flags(p)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", metavar="PATH")
    query.add_argument("--text", metavar="TEXT")
    p.add_argument("--captions", action="store_true", help="with --image: match captions (image->text)")
    p.add_argument("--guild", type=int, help="search as this server (its own cases plus shared ones)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_search)

    consent = sub.add_parser("consent", help="record or withdraw a user's consent")
    csub = consent.add_subparsers(dest="consent_command", required=True)
    for name, helptext in (
        ("grant", "record consent"),
        ("withdraw", "withdraw consent and delete the user's cases in that server"),
        ("status", "show the current consent and its audit"),
    ):
        p = csub.add_parser(name, help=helptext)
        p.add_argument("--user", type=int, required=True)
        p.add_argument("--guild", type=int, required=True)
        p.add_argument("--data-dir", type=Path, dest="data_dir")
        p.add_argument("--model", help="the collection to delete from (default: the configured model)")
        if name == "grant":
            p.add_argument("--scope", choices=["server", "shared"], default="server")
        p.set_defaults(func=run_consent)

    p = sub.add_parser("forget", help="withdraw a user's consent everywhere and delete every trace")
    p.add_argument("--user", type=int, required=True)
    p.add_argument("--data-dir", type=Path, dest="data_dir")
    p.add_argument("--model")
    p.set_defaults(func=run_forget)


def run_ingest(args: argparse.Namespace, container: Container) -> int:
    """`plipbot ingest DIR --source NAME --scope ...`."""
    from ingest.bulk import ImportJournal, ImportScope, journal_path, read_captions, run_import

    if not args.directory.is_dir():
        raise InputFileError(f"{args.directory}: no such folder.")
    scope = ImportScope.parse(args.scope)
    entries = read_captions(args.captions) if args.captions else None
    pipeline = container.ingest_pipeline
    journal = ImportJournal(
        journal_path(
            container.settings.data_dir, args.directory, args.source, scope, container.case_store.collection
        )
    )
    try:
        summary = run_import(
            pipeline,
            args.directory,
            source=args.source,
            scope=scope,
            journal=journal,
            entries=entries,
            skip_gate=args.skip_gate,
            batch_size=container.settings.model.batch_size,
            actor_id=OPERATOR_ACTOR_ID,
            progress=not args.no_progress,
        )
    finally:
        container.close()
    for line in summary.lines():
        print(line)
    print(f"model: {container.weights.identity.label}; store collection {pipeline.case_store.collection}")
    return 0


def run_search(args: argparse.Namespace, container: Container) -> int:
    """`plipbot search (--image PATH | --text TEXT)`."""
    if args.k < 1:
        raise InputFileError("--k must be at least 1.")
    if args.captions and not args.image:
        raise InputFileError("--captions goes with --image.")
    search = container.similar_search
    try:
        if args.image:
            image = load_images_or_fail([args.image], container)[0]
            if args.captions:
                results = search.captions_for_image(image, guild_id=args.guild, k=args.k)
            else:
                results = search.by_image(image, guild_id=args.guild, k=args.k)
        else:
            if not args.text.strip():
                raise InputFileError("--text is empty.")
            results = search.by_text(args.text, guild_id=args.guild, k=args.k)
    finally:
        container.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    if not results:
        print("no similar cases yet (the corpus is empty or nothing is visible to this server)")
    for rank, r in enumerate(results, 1):
        caption = (r.caption[:70] + "...") if len(r.caption) > 73 else r.caption
        print(f"{rank:>2}. {r.score:.3f}  {caption or '(no caption)'}  [{r.source}] {r.link or ''}")
    print(f"model: {container.weights.identity.label}")
    return 0


def _forget(container: Container, user_id: int, guild_id: int | None) -> int:
    """Withdraw and erase the user's data from every store, without loading the model; returns the
    number of cases deleted. A store that fails leaves the erasure open for the bot's sweep."""
    from ingest.withdrawal import forget_user

    return forget_user(
        consent_ledger=container.consent_ledger,
        stores=container.user_data_stores(),
        user_id=user_id,
        guild_id=guild_id,
        actor_id=OPERATOR_ACTOR_ID,
    ).cases


def _rescope_user(container: Container, user_id: int, guild_id: int) -> None:
    """Stamp the user's cases in the server with the scope their consent allows now (as the bot's
    re-scope task does after `/consent grant`), in every collection."""
    from ingest.scoping import rescope_user

    rescope_user(
        case_stores=container.all_case_stores(),
        consent_ledger=container.consent_ledger,
        user_id=user_id,
        guild_id=guild_id,
        guild_shares=container.guild_config.sharing(guild_id),
    )


def run_consent(args: argparse.Namespace, container: Container) -> int:
    """`plipbot consent grant|withdraw|status --user ID --guild ID`."""
    ledger = container.consent_ledger
    try:
        if args.consent_command == "grant":
            before = ledger.current(args.user, args.guild)
            consent = ledger.grant(args.user, args.guild, args.scope, actor_id=OPERATOR_ACTOR_ID)
            if before is not None and before.scope is not consent.scope:
                _rescope_user(container, args.user, args.guild)  # narrowed: its shared cases leave
            scope = consent.scope.value
            print(f"user {args.user} consents in guild {args.guild} ({scope}) since {consent.granted_at}")
        elif args.consent_command == "withdraw":
            deleted = _forget(container, args.user, args.guild)
            print(f"user {args.user} withdrew in guild {args.guild}; {deleted} case(s) deleted")
        else:
            current = ledger.current(args.user, args.guild)
            if current is None:
                print(f"user {args.user} has no active consent in guild {args.guild}")
            else:
                print(f"user {args.user}: {current.scope.value} since {current.granted_at}")
            entries = [e for e in ledger.audit(user_id=args.user) if e.guild_id in (args.guild, None)]
            for entry in entries:  # this server's entries and the user's server-wide ones (forget)
                print(f"  {entry.at.isoformat()}  {entry.action.value:<12} {entry.detail or ''}")
    finally:
        container.close()
    return 0


def run_forget(args: argparse.Namespace, container: Container) -> int:
    """`plipbot forget --user ID`: withdraw in every guild and delete every case and thumbnail."""
    try:
        deleted = _forget(container, args.user, None)
    finally:
        container.close()
    print(f"user {args.user}: consent withdrawn everywhere; {deleted} case(s) and their thumbnails deleted")
    return 0
