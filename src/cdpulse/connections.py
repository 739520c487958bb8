"""How every cdpulse process connects to Kafka and Redis: credentials and TLS, in one place.

Kafka: ``CDPULSE_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
SASL user and password (mechanism PLAIN or SCRAM-SHA-256/512) and the TLS files.
Redis: an ACL user and password, and TLS by the ``rediss://`` scheme with a CA file; one
Redis or a Redis Cluster (``redis+cluster://``), each through its redis-py client.
Passwords are ``SecretStr``: they never appear in a log line or ``cdpulse settings``.
"""

from __future__ import annotations

import ssl
from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis

from cdpulse.settings import CLUSTER_SUFFIX, Settings

# A Redis client of either kind: one node's, or a Redis Cluster's (which routes each
# command by its key's slot and follows the cluster through failovers and migrations).
AsyncRedis: TypeAlias = aioredis.Redis | aioredis.RedisCluster
BlockingRedis: TypeAlias = redis.Redis | redis.RedisCluster


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def faust_credentials(settings: Settings) -> Any:
    """The ``broker_credentials`` of the Faust app (None for PLAINTEXT)."""
    import faust  # only the roles need it; producers and admin stay light

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=_ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's producer, consumer and admin client."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options.update(
            ssl_cafile=settings.kafka_ssl_cafile or None,
            ssl_certfile=settings.kafka_ssl_certfile or None,
            ssl_keyfile=settings.kafka_ssl_keyfile or None,
        )
    if settings.kafka_security_protocol.startswith("SASL_"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return options


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url``: the ACL user and TLS CA file."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password.get_secret_value():
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ssl_ca_certs:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_certs
    return options


def cluster_url(url: str) -> str | None:
    """The node URL redis-py's cluster client starts from, when ``url`` names a Redis
    Cluster (``redis+cluster://host:port``); None for one Redis."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.endswith(CLUSTER_SUFFIX):
        return f"{scheme.removesuffix(CLUSTER_SUFFIX)}://{rest}"
    return None


def async_redis(url: str, connections: int = 32, **options: Any) -> AsyncRedis:
    """An asyncio client for ``url`` (``options``: ``redis_options``).

    One Redis: a bounded, blocking pool; under a burst of API reads redis-py's default
    pool opens a connection per waiting request until the process runs out of file
    descriptors and requests fail; here they wait (up to the socket timeout) for one of
    ``connections``. A cluster: redis-py keeps a pool per node of at most ``connections``.
    """
    common: dict[str, Any] = {
        "decode_responses": False,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        **options,
    }
    nodes = cluster_url(url)
    if nodes is not None:
        return aioredis.RedisCluster.from_url(nodes, max_connections=connections, **common)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=10, **common
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


def blocking_redis(url: str, **options: Any) -> BlockingRedis:
    """A blocking client for ``url``: the producer's and the tools' (no event loop)."""
    common: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, **options}
    nodes = cluster_url(url)
    if nodes is not None:
        return redis.RedisCluster.from_url(nodes, **common)
    return redis.Redis.from_url(url, **common)


def redis_client(settings: Settings) -> AsyncRedis:
    """A role's asyncio Redis client: credentials, TLS and pool size from the settings."""
    return async_redis(settings.redis_url, settings.redis_connections, **redis_options(settings))
