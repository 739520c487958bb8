"""Bearer tokens, scopes, the rate limit and the worker's refusal to start unsafely."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from cdpulse.app.auth import ALL_SCOPES, COLLECTOR_SCOPES, Gate, RateLimit, event_refusal, refusals
from cdpulse.contract.events import EVENT_TYPES
from cdpulse.settings import ApiToken, Settings

TOKENS = {
    "shop": ApiToken(secret=SecretStr("ingest-secret"), scopes=["ingest"]),
    "login": ApiToken(secret=SecretStr("login-secret"), scopes=["ingest", "identity"]),
    "dpo": ApiToken(secret=SecretStr("admin-secret"), scopes=["read", "admin"]),
    "idle": ApiToken(secret=SecretStr("idle-secret"), scopes=[]),
}


@pytest.mark.parametrize(
    ("header", "scope", "status", "name"),
    [
        ("Bearer ingest-secret", "ingest", 200, "shop"),
        ("Bearer admin-secret", "admin", 200, "dpo"),
        ("Bearer admin-secret", "read", 200, "dpo"),
        ("Bearer ingest-secret", "read", 403, "shop"),
        ("Bearer admin-secret", "ingest", 403, "dpo"),
        ("Bearer ingest-secret", "identity", 403, "shop"),
        ("Bearer login-secret", "identity", 200, "login"),
        ("Bearer ingest-secret", "assign", 403, "shop"),
        ("Bearer idle-secret", "read", 403, "idle"),
        ("Bearer ingest-secre", "ingest", 401, None),
        ("Bearer ingest-secret-and-more", "ingest", 401, None),
        ("Basic ingest-secret", "ingest", 401, None),
        ("ingest-secret", "ingest", 401, None),
        (None, "ingest", 401, None),
        ("Bearer ", "ingest", 401, None),
    ],
)
def test_tokens_grant_their_scopes_only(
    header: str | None, scope: str, status: int, name: str | None
) -> None:
    verdict = Gate(TOKENS).check(header, scope)  # type: ignore[arg-type]
    assert (verdict.status, verdict.name) == (status, name)


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.mark.parametrize(
    ("header", "status", "name"),
    [
        (_basic("ingest-secret:"), 200, "shop"),  # the Segment SDKs: key, empty password
        (_basic("ingest-secret:ignored"), 200, "shop"),
        (_basic("login-secret:"), 200, "login"),
        ("Bearer ingest-secret", 200, "shop"),
        (_basic("admin-secret:"), 403, "dpo"),
        (_basic("ingest-secre:"), 401, None),
        (_basic(":ingest-secret"), 401, None),
        (_basic(""), 401, None),
        ("Basic not-base64!", 401, None),
    ],
)
def test_a_write_key_is_a_token_sent_as_the_basic_user_name(
    header: str, status: int, name: str | None
) -> None:
    gate = Gate(TOKENS)
    verdict = gate.check(header, "ingest", write_key=True)
    assert (verdict.status, verdict.name) == (status, name)
    # only where the route takes write keys
    if header.startswith("Basic"):
        assert gate.check(header, "ingest").status == 401


def test_refusals_say_what_is_wrong_and_how_to_fix_it() -> None:
    missing = Gate(TOKENS).check(None, "read").error
    assert "Authorization: Bearer" in missing and "CDPULSE_API_TOKENS" in missing
    scope = Gate(TOKENS).check("Bearer ingest-secret", "admin").error
    assert "'shop' lacks scope 'admin'" in scope and "ingest-secret" not in scope


def test_disabled_auth_lets_everything_through() -> None:
    assert Gate({}, disabled=True).check(None, "admin").allowed
    assert Gate({}, disabled=True).check(None, "read").scopes == ALL_SCOPES
    assert not Gate({}).check("Bearer anything", "read").allowed


def test_a_verdict_carries_the_tokens_scopes_and_the_challenge_code() -> None:
    gate = Gate(TOKENS)
    assert gate.check("Bearer login-secret", "ingest").scopes == {"ingest", "identity"}
    assert gate.check(None, "read").code == ""  # no token: a bare challenge (RFC 6750)
    assert gate.check("Bearer nope", "read").code == "invalid_token"
    scopeless = gate.check("Bearer idle-secret", "read")
    assert scopeless.code == "insufficient_scope" and "(it has no scope)" in scopeless.error


def test_every_event_type_of_the_contract_has_a_collector_scope() -> None:
    assert set(COLLECTOR_SCOPES) == set(EVENT_TYPES)
    assert {t for t, s in COLLECTOR_SCOPES.items() if s != "ingest"} == {
        "identify",
        "consent_updated",
        "erasure_requested",
        "customers_merged",
    }


def _event(kind: object) -> dict[str, object]:
    return {"event_id": "e-7", "type": kind, "customer_id": "C-1"}


@pytest.mark.parametrize(
    ("secret", "kind", "scope"),
    [
        ("ingest-secret", "page_viewed", ""),
        ("ingest-secret", "order_completed", ""),
        ("ingest-secret", "identify", "identity"),
        ("ingest-secret", "consent_updated", "identity"),
        ("login-secret", "identify", ""),
        ("login-secret", "consent_updated", ""),
        ("ingest-secret", "erasure_requested", None),
        ("login-secret", "erasure_requested", None),
        ("ingest-secret", "customers_merged", None),
        ("login-secret", "customers_merged", None),
        # not a type of the contract: validation rejects it with its own reason
        ("ingest-secret", "nope", ""),
        ("ingest-secret", ["identify"], ""),
    ],
)
def test_the_collector_gives_each_event_type_its_scope(
    secret: str, kind: object, scope: str | None
) -> None:
    verdict = Gate(TOKENS).check(f"Bearer {secret}", "ingest")
    refusal = event_refusal(verdict, 3, _event(kind))
    if scope == "":
        assert refusal is None
        return
    assert refusal is not None
    assert (refusal.index, refusal.event_id, refusal.type, refusal.scope) == (3, "e-7", kind, scope)
    assert refusal.as_json()["status"] == "refused"


def test_erasure_is_refused_on_the_collector_even_without_auth() -> None:
    refusal = event_refusal(
        Gate({}, disabled=True).check(None, "ingest"), 0, _event("erasure_requested")
    )
    assert refusal is not None and "DELETE /v1/profiles/{id}" in refusal.detail
    merge = event_refusal(
        Gate({}, disabled=True).check(None, "ingest"), 0, _event("customers_merged")
    )
    assert merge is not None and "POST /v1/admin/merges" in merge.detail
    identify = event_refusal(Gate({}, disabled=True).check(None, "ingest"), 0, _event("identify"))
    assert identify is None


def test_the_rate_limit_refills_at_its_rate_per_token() -> None:
    now = [0.0]
    limit = RateLimit(rate=10, burst=20, clock=lambda: now[0])
    assert limit.take("shop", 20) == 0.0
    assert limit.take("shop", 5) == pytest.approx(0.5)
    assert limit.take("crm", 20) == 0.0  # another token has its own bucket
    now[0] = 0.5
    assert limit.take("shop", 5) == 0.0
    assert limit.take("shop", 21) == float("inf")  # never fits: bigger than the burst


def test_the_worker_refuses_to_start_without_a_key_or_tokens() -> None:
    problems = refusals(Settings(_env_file=None))  # type: ignore[call-arg]
    assert len(problems) == 2
    assert "CDPULSE_PSEUDONYM_KEY" in problems[0] and "CDPULSE_API_TOKENS" in problems[1]
    assert "CDPULSE_AUTH_DISABLED=true" in problems[1]
    local = Settings(pseudonym_key=SecretStr("k"), auth_disabled=True)
    assert refusals(local) == []
    secured = Settings(pseudonym_key=SecretStr("k"), api_tokens=TOKENS)
    assert refusals(secured) == []


def test_connection_options_carry_the_configured_credentials() -> None:
    from cdpulse.connections import kafka_options, redis_options

    plain = Settings()
    assert kafka_options(plain) == {"security_protocol": "PLAINTEXT"} and redis_options(plain) == {}
    secured = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="cdpulse",
        kafka_sasl_password=SecretStr("kafka-pw"),
        kafka_ssl_cafile="/etc/ca.pem",
        redis_username="cdpulse",
        redis_password=SecretStr("redis-pw"),
        redis_ssl_ca_certs="/etc/redis-ca.pem",
    )
    assert kafka_options(secured) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cdpulse",
        "sasl_plain_password": "kafka-pw",
        "ssl_cafile": "/etc/ca.pem",
        "ssl_certfile": None,
        "ssl_keyfile": None,
    }
    assert redis_options(secured) == {
        "username": "cdpulse",
        "password": "redis-pw",
        "ssl_ca_certs": "/etc/redis-ca.pem",
    }
    assert "kafka-pw" not in repr(secured) and "redis-pw" not in repr(secured)


def test_the_worker_gets_faust_credentials_for_sasl() -> None:
    from cdpulse.connections import faust_credentials

    assert faust_credentials(Settings()) is None
    credentials = faust_credentials(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="cdpulse",
            kafka_sasl_password=SecretStr("pw"),
        )
    )
    assert (credentials.username, credentials.password) == ("cdpulse", "pw")
    assert credentials.protocol.value == "SASL_PLAINTEXT"
