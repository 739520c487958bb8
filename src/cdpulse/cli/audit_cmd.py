"""``cdpulse audit``: who read whose data, when and why, from the read-audit topic.

Prints the records of ``CDPULSE_TOPIC_READ_AUDIT`` that match every filter given, one
JSON document a line, each once (a record sent twice is printed once), in the order of
the time the api answered (``at``; the matches are held until the scan ends, since
records reach Kafka in batches a little after that time, from several api processes),
with a progress bar on stderr for a long scan (a line every few seconds in logs) and a
summary line after it. ``--subject`` takes a customer or visitor id, pseudonymised here under
``CDPULSE_PSEUDONYM_KEY`` as the records name them, or a pseudonym (``hmac:…``) as is.
``--since`` seeks each partition to its first record at or after that time, so a recent
window does not read the whole topic.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cdpulse.cli.main import CliError
from cdpulse.settings import Settings, get_settings

if TYPE_CHECKING:
    from cdpulse.privacy.read_audit import AuditQuery

PROGRESS_EVERY = 1000  # records between two progress updates
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])\Z")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit", help="list the audit records of reads of customer data (filtered)"
    )
    many = {"action": "append", "default": []}
    parser.add_argument("--token", **many, help="the token's name (repeat for any of several)")
    parser.add_argument(
        "--subject", **many, help="a customer or visitor id, or its hmac: pseudonym (repeatable)"
    )
    parser.add_argument(
        "--route",
        **many,
        help="a route pattern, or a glob over them: '/v1/profiles/*' (repeatable)",
    )
    parser.add_argument("--purpose", **many, help="the token's declared purpose (repeatable)")
    parser.add_argument(
        "--since", help="from this time: RFC 3339 with a zone, or a span back from now (24h, 7d)"
    )
    parser.add_argument("--until", help="before this time (same forms as --since)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cdpulse.privacy.pseudonyms import is_pseudonym
    from cdpulse.privacy.read_audit import AuditQuery, subject_of
    from cdpulse.privacy.traits import TraitPolicy

    settings = get_settings()
    now = time.time()
    since = moment(args.since, "--since", now)
    until = moment(args.until, "--until", now)
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since ({args.since}) must be before --until ({args.until})")
    raw = [s for s in args.subject if not is_pseudonym(s)]
    if raw and not settings.pseudonym_key.get_secret_value():
        raise CliError(
            "--subject with an id needs CDPULSE_PSEUDONYM_KEY (the key the api ran with) to "
            "find its pseudonym; set it, or give the hmac: pseudonym itself"
        )
    pseudonyms = TraitPolicy.from_settings(settings).pseudonymizer
    query = AuditQuery(
        tokens=frozenset(args.token),
        subjects=frozenset(subject_of(s, pseudonyms) for s in args.subject),
        routes=tuple(args.route),
        purposes=frozenset(args.purpose),
        since_ms=since,
        until_ms=until,
    )
    matched, scanned, unreadable = scan(settings, query)
    problems = f", {unreadable} unreadable (not read audit records)" if unreadable else ""
    print(
        f"cdpulse audit: {matched} of {scanned} records matched{problems}",
        file=sys.stderr,
    )
    return 0


def moment(text: str | None, flag: str, now: float) -> int | None:
    """Epoch ms of ``text``: an RFC 3339 time with a zone, or a span back from ``now``.

    >>> moment("2026-12-01T00:00:00Z", "--since", 0)
    1796083200000
    >>> moment("90m", "--since", 10_000.0)
    4600000
    """
    if text is None:
        return None
    ago = _AGO.match(text)
    if ago is not None:
        return int((now - float(ago.group(1)) * _UNIT[ago.group(2)]) * 1000)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CliError(
            f"{flag} {text!r} is neither an RFC 3339 time with a zone "
            "(2026-12-01T00:00:00Z) nor a span back from now (90m, 24h, 7d)"
        )
    return int(parsed.timestamp() * 1000)


def scan(settings: Settings, query: AuditQuery) -> tuple[int, int, int]:
    """Print the records matching ``query``; (matched, scanned, unreadable)."""
    from kafka.errors import KafkaError

    from cdpulse.cli.rebuild_cmd import history_consumer
    from cdpulse.ingest.rebuild import History, RebuildError
    from cdpulse.ops.progress import Reporter
    from cdpulse.privacy.read_audit import ReadAuditError, ReadRecord

    topic = settings.topic_read_audit
    try:
        history = History(
            lambda: history_consumer(settings, "audit"), [topic], since_ms=query.since_ms
        )
    except RebuildError as exc:
        raise CliError(
            f"the read-audit topic {topic!r} cannot be read ({exc}); `cdpulse topics` and "
            "every role create it (CDPULSE_TOPIC_READ_AUDIT)"
        ) from exc
    except KafkaError as exc:
        raise CliError(f"cannot read {topic!r} at {settings.kafka_bootstrap}: {exc}") from exc
    scanned, unreadable = 0, 0
    found: dict[str, ReadRecord] = {}
    with history, Reporter(f"scanning {topic}", history.total) as progress:
        for message in history.messages():
            scanned += 1
            if scanned % PROGRESS_EVERY == 0:
                progress.advance(PROGRESS_EVERY)
            try:
                record = ReadRecord.from_json(message.value)
            except ReadAuditError:
                unreadable += 1
                continue
            if record.id not in found and query.matches(record):
                found[record.id] = record
        progress.advance(scanned % PROGRESS_EVERY)
    for record in sorted(found.values(), key=lambda r: (r.at, r.id)):
        sys.stdout.write(record.to_json().decode() + "\n")
    sys.stdout.flush()
    return len(found), scanned, unreadable
