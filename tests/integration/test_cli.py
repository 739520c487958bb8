"""The command line against real Kafka and Redis: produce, import --produce, profile,
redis-acl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from cdpulse.store.acl import hashed_password, setuser_command
from tests.integration.conftest import Env, consume_all, drained, wait_until


def cdpulse(env: Env, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdpulse", *args],
        env={**os.environ, **env.variables},
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_simulate_produce_and_read_a_profile_with_the_cli(env: Env, tmp_path: Path) -> None:
    shop = tmp_path / "shop.jsonl"
    made = cdpulse(
        env, "simulate", "--customers", "20", "--days", "5", "--seed", "4", "--out", str(shop)
    )
    assert made.returncode == 0, made.stderr
    lines = shop.read_bytes().splitlines()
    # Two bad lines among the good ones: reported by line number, not sent.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join([lines[0], b"{oops", *lines[1:], b'{"type": "page_viewed"}']))

    sent = cdpulse(env, "produce", str(mixed))
    assert sent.returncode == 1, sent.stderr
    assert "line 2: invalid_json" in sent.stderr
    assert f"line {len(lines) + 2}: " in sent.stderr
    assert f"sent {len(lines)} events" in sent.stderr

    roles = env.roles()
    wait_until(lambda: drained(env.settings), 120, "the worker to drain")
    customer = next(
        json.loads(line)["customer_id"] for line in lines if json.loads(line).get("customer_id")
    )
    printed = cdpulse(env, "profile", customer)
    assert printed.returncode == 0, printed.stderr
    served = httpx.get(f"{roles.api.url}/v1/profiles/{customer}", timeout=10).json()
    assert json.loads(printed.stdout) == served
    assert served["events"] > 0

    unknown = cdpulse(env, "profile", "nobody-at-all")
    assert unknown.returncode == 2 and "no profile for id 'nobody-at-all'" in unknown.stderr


def test_import_csv_produces_orders_to_kafka(env: Env, tmp_path: Path) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(
        "customer,date,total,order\n"
        "C-1,2026-03-01,19.90,O-1\n"
        "C-1,2026-03-01,5.10,O-1\n"
        "C-2,2026-03-02,-4,O-2\n"
        "C-2,2026-03-05,42.00,O-3\n",
        encoding="utf-8",
    )
    result = cdpulse(
        env,
        "import", "csv", str(export),
        "--customer-col", "customer", "--time-col", "date",
        "--amount-col", "total", "--order-col", "order",
        "--produce",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # one row skipped
    assert ":4:" in result.stderr
    records = consume_all(env.settings, env.settings.topic_transactions, 2)
    orders = sorted((r.key.decode(), json.loads(r.value)["properties"]["revenue"]) for r in records)
    assert orders == [("C-1", 25.0), ("C-2", 42.0)]


def test_redis_acl_prints_a_line_redis_cli_applies_as_the_allow_list(env: Env) -> None:
    redis_cli = shutil.which("redis-cli")
    assert redis_cli, "redis-cli comes with redis-server (Debian's redis-tools)"
    user, twin, password = f"cli-{env.name}", f"twin-{env.name}", f"pw-{env.name}"
    # A quote redis-cli would read as quoting, and a glob character, in the prefix.
    prefix = f'{env.name}*"q'
    printed = subprocess.run(
        [sys.executable, "-m", "cdpulse", "redis-acl", "--user", user, "--password-env", "PW"],
        env={**os.environ, **env.variables, "CDPULSE_REDIS_PREFIX": prefix, "PW": password},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert password not in printed.stdout
    applied = subprocess.run(
        [redis_cli, "-u", env.settings.redis_url],
        input=printed.stdout,
        capture_output=True,
        text=True,
        timeout=30,
    )
    admin = env.redis
    settings = env.settings.model_copy(update={"redis_prefix": prefix})
    admin.execute_command(*setuser_command(settings, twin, hashed_password(password)))
    confined = redis.Redis.from_url(env.settings.redis_url, username=user, password=password)
    try:
        assert applied.stdout.strip() == "OK", applied.stdout + applied.stderr
        # What redis-cli read back is the module's own rule list, argument for argument.
        assert admin.acl_getuser(user) == admin.acl_getuser(twin)
        assert confined.set(f"{prefix}:k", b"1") is True
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.set(f'{env.name}X"q:k', b"1")  # the * in the prefix is no wildcard
    finally:
        confined.close()
        admin.execute_command("ACL", "DELUSER", user, twin)
        admin.delete(f"{prefix}:k")


def test_produce_holds_custom_events_to_the_operators_schemas(env: Env, tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    schema = {"type": "object", "required": ["product_id"]}
    (folder / "wishlist_added.json").write_text(json.dumps(schema), encoding="utf-8")
    env.variables["CDPULSE_CUSTOM_EVENT_SCHEMAS"] = str(folder)

    def wish(n: int, **properties: object) -> bytes:
        event = {
            "event_id": f"w{n}",
            "type": "custom",
            "name": "wishlist_added",
            "timestamp": "2026-01-05T10:00:00.000Z",
            "customer_id": "C-1",
            "channel": "web",
            "properties": properties,
        }
        return json.dumps(event).encode()

    events = tmp_path / "wishes.jsonl"
    events.write_bytes(b"\n".join([wish(1, product_id="P-1"), wish(2, price=3)]) + b"\n")
    sent = cdpulse(env, "produce", str(events))
    assert sent.returncode == 1, sent.stderr
    assert f"{events}: line 2: schema_violation: " in sent.stderr
    assert "'properties.product_id': is required [required]" in sent.stderr
    assert "sent 1 events" in sent.stderr
    records = consume_all(env.settings, env.settings.topic_clickstream, 1)
    assert [json.loads(r.value)["event_id"] for r in records] == ["w1"]

    # A schema file that is no schema stops the command, naming the file and the fix.
    (folder / "video_played.json").write_text("{oops", encoding="utf-8")
    broken = cdpulse(env, "produce", str(events))
    assert broken.returncode == 2, broken.stderr
    assert f"{folder / 'video_played.json'}: line 1, column 2: not JSON" in broken.stderr
