"""The Redis ACL a cdpulse deployment runs under: every command its roles and tools send,
and nothing else (an allow-list), on the keys under its prefix.

Each command is listed where it comes from, so a new Redis call is added here with the
code that sends it; ``tests/integration/test_privacy.py`` runs every role under the
rules (a missing command fails it) and checks what they refuse, and a unit test keeps
``LUA`` equal to the scripts' ``redis.call``s. Commands a script calls are checked
against the user's permissions and key patterns like any other, so a script is no way
around the list. Rules name a command and, where only one of its subcommands is sent,
that subcommand (``script|load``): ``SCRIPT FLUSH`` and ``CLIENT KILL`` stay refused.

Not in the list, because no cdpulse process sends them: ``MONITOR``, ``DEBUG``,
``CONFIG``, ``ACL``, ``KEYS``, ``FLUSHALL``/``FLUSHDB``, ``SHUTDOWN``, ``MODULE``,
``REPLICAOF``, ``EVAL``, ``MULTI``/``EXEC``, pub/sub (no channels: ``resetchannels``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cdpulse.settings import Settings
from cdpulse.store.keys import Keys

# What redis-py sends on a new connection: HELLO 3 with the user and password (AUTH when
# the server predates RESP3), SELECT when CDPULSE_REDIS_URL names a database other than
# 0. PING is the health checks' probe. redis-py also sends CLIENT SETINFO, which Redis
# 7.0 does not know (so no rule can name it) and whose refusal on 7.2+ redis-py ignores;
# allowing all of CLIENT instead would allow CLIENT KILL and CLIENT LIST.
#
# A Redis Cluster client (``redis+cluster://``) also asks a node for the slot map (CLUSTER
# SLOTS, again after a failover or a migration) and for the commands' key positions
# (COMMAND). The cluster does not share users: the rule is set on every node.
CONNECTION: tuple[str, ...] = ("hello", "auth", "select", "ping", "cluster|slots", "command")

# Scripts are called by SHA (``store/state.py``, redis-py's ``register_script``) and
# loaded when the server answers NOSCRIPT; never EVAL, never SCRIPT EXISTS.
SCRIPTS: tuple[str, ...] = ("evalsha", "script|load")

# What the Python code sends (store/, app/, the rebuild and profile commands).
# SCAN: only `cdpulse rebuild`, an offline command, sends it (its target prefix must be
# empty, and its summary counts aliases); erasure finds every key by name (the memory
# bench scans too, as an operator, not as this user). SCAN is not
# confined by key patterns (it lists key names of the whole database), but it reads no
# values, and the key-value commands below are confined to the prefix.
# WAIT: a Redis Cluster write waits for a replica (``store/replicas.py``).
CLIENT: tuple[str, ...] = (
    "get", "mget", "set", "del", "exists", "decrby", "scan", "wait",
    "hget", "hmget", "hgetall", "hvals", "hset", "hsetnx", "hdel", "hscan",
    "sadd", "smembers", "hkeys", "lrange",
    "zcard", "zrangebylex", "zrem", "zscore",
)  # fmt: skip

# What the Lua scripts in this package call (a unit test keeps this equal to them).
LUA: tuple[str, ...] = (
    "get", "set", "del", "exists", "incr", "decr", "pexpire", "pttl", "type", "time",
    "hget", "hmget", "hset", "hsetnx", "hdel", "hincrby", "hlen", "hexists", "hkeys",
    "hgetall", "smembers",
    "zadd", "zrem", "zrangebyscore",
)  # fmt: skip

# The allow-list, each command once, in the order above.
COMMANDS: tuple[str, ...] = tuple(dict.fromkeys((*CONNECTION, *SCRIPTS, *CLIENT, *LUA)))


def hashed_password(password: str) -> str:
    """The ACL rule that sets ``password`` by its SHA-256 (``#<hex>``): what Redis keeps
    anyway, so a printed rule does not show the password itself."""
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def rules(prefixes: Sequence[str]) -> list[str]:
    """The user's permissions: keys under each of ``prefixes``, no channels, the
    allow-list."""
    for prefix in prefixes:
        if any(c.isspace() for c in prefix):
            # Redis refuses a key pattern with whitespace (ACL files could not hold it).
            raise ValueError(
                f"key prefix {prefix!r} holds whitespace, which a Redis ACL key pattern "
                "cannot: choose a prefix without it (CDPULSE_REDIS_PREFIX)"
            )
    return [
        *(f"~{Keys(prefix).pattern}" for prefix in prefixes),
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in COMMANDS),
    ]


def setuser_command(
    settings: Settings, user: str, password: str | None, also: Sequence[str] = ()
) -> list[str]:
    """``ACL SETUSER`` for ``user``, as arguments: keys under the configured prefix and
    the ones in ``also`` (a rebuild's target prefix), ``password`` a rule (``>secret``,
    ``#sha256``). ``reset`` first, so nothing granted before survives; without a
    password the user is on but nobody can log in as it until one is added."""
    prefixes = list(dict.fromkeys((settings.redis_prefix, *also)))
    login = [] if password is None else [password]
    return ["ACL", "SETUSER", user, "reset", "on", *login, *rules(prefixes)]
