"""The one configuration object: every setting, its environment variable and its default.

Each field is read from ``CDPULSE_<FIELD>`` (for example ``CDPULSE_KAFKA_BOOTSTRAP``).
The table in README is generated from this class by ``cdpulse settings``.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# What an HTTP API token may do (``app/auth.py`` checks it; README: Privacy and security):
# ``ingest`` posts behavioural events, ``identity`` posts identify and consent events,
# ``read`` reads, ``assign`` assigns customers to experiments (which exposes them),
# ``admin`` exports and erases.
Scope = Literal["ingest", "identity", "read", "assign", "admin"]
# Fairness groups read from the profile itself (``models/fairness.py``); any other group
# attribute is an allow-listed trait.
FAIRNESS_BUILT_IN = ("channel", "tenure")

# CDPULSE_REDIS_URL's schemes: redis-py's own, and each with "+cluster" for a Redis Cluster.
CLUSTER_SUFFIX = "+cluster"
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis" + CLUSTER_SUFFIX, "rediss" + CLUSTER_SUFFIX)


class ApiToken(BaseModel):
    """One configured token: its secret and what it may do."""

    model_config = ConfigDict(frozen=True)

    secret: SecretStr
    scopes: list[Scope]
    # This token's own request limit, in place of CDPULSE_REQUEST_RATE / _BURST.
    request_rate: float | None = Field(None, gt=0)
    request_burst: int | None = Field(None, ge=1)
    # Web pages that may send with this token from a browser (analytics.js), each an
    # origin as browsers send it: "https://shop.example", "http://localhost:8080".
    # Empty: a token for servers only (app/cors.py).
    origins: list[str] = []
    # What this token's reads are for, as read audit records name it ("customer-support",
    # "crm-sync"): one token per purpose. A slug, never free text, so a record holds no
    # personal data; empty: "unspecified".
    purpose: str = Field("", pattern=r"^([a-z0-9][a-z0-9._-]{0,63})?$")

    @field_validator("origins")
    @classmethod
    def _as_browsers_send(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            parts = urlsplit(origin)
            default_port = (parts.scheme, parts.port) in (("http", 80), ("https", 443))
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or origin != f"{parts.scheme}://{parts.netloc}".lower()
                or "*" in origin
                or default_port
            ):
                raise ValueError(
                    f"origin {origin!r} is not one a browser sends: give scheme://host[:port] "
                    "in lower case, without a path, a trailing slash, a default port or a "
                    "wildcard (list each origin)"
                )
        return origins


class Settings(BaseSettings):
    """Frozen, validated configuration for every cdpulse process."""

    model_config = SettingsConfigDict(env_prefix="CDPULSE_", frozen=True, extra="ignore")

    # --- connections -------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis connection URL: redis://, rediss:// (TLS) or unix:// for one Redis; "
        "redis+cluster://host:port (rediss+cluster:// with TLS) for a Redis Cluster, any of its "
        "nodes (README: Running at scale).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="Kafka SASL mechanism (SASL_* protocols)."
    )
    kafka_sasl_username: str = Field("", description="Kafka SASL user.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="Kafka SASL password.")
    kafka_ssl_cafile: str = Field("", description="CA bundle that signs the brokers' certificates.")
    kafka_ssl_certfile: str = Field("", description="Client certificate (mutual TLS), PEM.")
    kafka_ssl_keyfile: str = Field("", description="Key of the client certificate, PEM.")
    redis_username: str = Field("", description="Redis ACL user (empty: the default user).")
    redis_password: SecretStr = Field(SecretStr(""), description="Redis ACL password.")
    redis_ssl_ca_certs: str = Field(
        "", description="CA bundle for Redis TLS (use a rediss:// URL)."
    )
    redis_connections: int = Field(
        32,
        ge=1,
        description="Redis connections per process at most; more requests wait for one.",
    )
    web_host: str = Field("127.0.0.1", description="Interface every role's HTTP server binds.")
    web_port: int = Field(6066, description="Port of the API role's HTTP server (cdpulse api).")
    worker_port: int = Field(
        6067, description="Port of a worker's HTTP server (health and metrics only)."
    )
    learner_port: int = Field(
        6068, description="Port of the learner's HTTP server (health and metrics only)."
    )

    # --- topics ------------------------------------------------------------------------
    topic_clickstream: str = Field("cdp.clickstream", description="Clickstream events.")
    topic_transactions: str = Field("cdp.transactions", description="Orders and refunds.")
    topic_customers: str = Field(
        "cdp.customers", description="Identify, consent and engagement events."
    )
    topic_dead_letter: str = Field("cdp.dead-letter", description="Rejected messages.")
    topic_training: str = Field(
        "cdp.training", description="Labelled churn examples (one partition: one learner)."
    )
    topic_campaign_training: str = Field(
        "cdp.campaign-training",
        description="Labelled campaign-response examples (one partition: one learner).",
    )
    topic_persona_training: str = Field(
        "cdp.persona-training",
        description="Persona examples, one per customer and day with an order (one "
        "partition: one learner).",
    )
    topic_reco_events: str = Field(
        "cdp.reco-events",
        description="Item events for the recommender (reco_shards partitions, by customer).",
    )
    topic_recommendations: str = Field(
        "cdp.recommendations", description="Recommendation lists for downstream services."
    )
    topic_segments: str = Field(
        "cdp.segments", description="Segment transitions: a customer entered or left a segment."
    )
    topic_audit: str = Field(
        "cdp.audit",
        description="Audit records of erasures and admin merges (kept forever, no personal data).",
    )
    topic_read_audit: str = Field(
        "cdp.read-audit",
        description="Audit records of reads of customer data: who (token), why (its purpose), "
        "which route, whom (pseudonyms), when; no personal data (README: Privacy and security).",
    )
    read_audit_retention_days: float = Field(
        400.0,
        ge=0,
        description="Days the read-audit topic keeps its records (retention.ms of the topic "
        "cdpulse creates; 0: kept forever).",
    )
    read_audit_queue: int = Field(
        50_000,
        ge=1,
        description="Read audit records an api process holds while Kafka does not take them; "
        "beyond it new ones are dropped and counted (cdpulse_read_audit_dropped_total), and "
        "/readyz answers 503.",
    )
    read_audit_flush_seconds: float = Field(
        0.5,
        gt=0,
        description="Seconds between two sends of an api process's queued read audit records "
        "(a read never waits on Kafka: it only queues its record).",
    )
    remembered_pseudonyms: int = Field(
        20_000,
        ge=1,
        description="Ids whose pseudonym an api process remembers, the most recently asked "
        "for: the read audit names each read's customers by it and the recommender knows "
        "customers by it, and a customer read again costs no HMAC again.",
    )
    remembered_links: int = Field(
        20_000,
        ge=0,
        description="Linked ids (an anonymous id of a known customer) whose link an api "
        "process remembers, the most recently learnt: a read of one asks Redis for its "
        "profile, its link and the remembered customer's profile in one round trip instead "
        "of three, and still follows the link Redis holds (0: none remembered).",
    )
    topic_triggers: str = Field(
        "cdp.triggers", description="Trigger firings for downstream services."
    )
    topic_offer_rewards: str = Field(
        "cdp.offer-rewards", description="Offer outcomes for the bandit's learner (one partition)."
    )
    topic_erasures: str = Field(
        "cdp.erasures",
        description=(
            "The erasure ledger: pseudonyms of erased ids (compacted, one partition, never "
            "emptied); cdpulse rebuild loads it into an empty Redis."
        ),
    )
    topic_partitions: int = Field(4, ge=1, description="Partitions of topics cdpulse creates.")
    reco_shards: int = Field(
        1,
        ge=1,
        description="Partitions of the reco-events topic cdpulse creates: the recommender's "
        "shards, each learned by one learner process and served merged.",
    )
    topic_replication: int = Field(
        3,
        ge=1,
        description="Replication factor of topics cdpulse creates: copies of every partition "
        "on distinct brokers (1 for a single broker, as the local stack and make demo set).",
    )
    topic_min_insync_replicas: int = Field(
        2,
        ge=1,
        description="min.insync.replicas of topics cdpulse creates: replicas that must hold "
        "a record before the broker acknowledges it to an acks=all producer (every cdpulse "
        "producer); at most CDPULSE_TOPIC_REPLICATION.",
    )

    # --- worker ------------------------------------------------------------------------
    app_id: str = Field(
        "cdpulse",
        description="Faust app id: the worker's Kafka consumer group; the learner's and the "
        "api's are `<app_id>-learner` and `<app_id>-api`.",
    )
    redis_prefix: str = Field("cdp", description="Prefix of every Redis key cdpulse writes.")
    data_dir: str = Field(
        ".run/worker",
        description="Folder for each role's local state (faust's, one folder per app id).",
    )
    # Under a backlog a batch is full at once, and a worker's cost is ~40 µs per event
    # plus ~120-150 µs per profile a batch touches (apply, churn, triggers, encode, write;
    # in-process, compiled, the bench's shop: 0.22 profile updates per event in batches
    # of 5,000, 0.11 in batches of 40,000). In a fuller batch a customer's session is more
    # often one profile update: 0.074 -> 0.058 CPU s per 1,000 events in-process, and the
    # engine's backlog rate 7,733 (run q, 5,000) -> 11,795 events/s (run r, 40,000, due
    # work in proportion; BENCHMARKS.md, 2026-12-07 evening). Without a backlog batches
    # stay as small as what arrived (CDPULSE_BATCH_WITHIN), so this bounds a backlog's
    # batches only; a worker that keeps up still pays the per-profile cost per event.
    batch_size: int = Field(
        40_000, ge=1, description="Most messages a worker or learner takes per batch."
    )
    batch_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Bytes of messages a worker's batch holds at most: a batch of large "
        "messages ends before CDPULSE_BATCH_SIZE (never empty), so a worker's memory stays "
        "bounded whatever the events weigh (40,000 events of the simulated shop: ~14 MB).",
    )
    due_per_batch: int = Field(
        500,
        ge=1,
        description="Profiles whose churn label or trigger came due a worker's batch loads "
        "and decides, at most, per shard and schedule; the rest follow in the next "
        "batches. Too few and due work falls behind: while it does, labels are decided only "
        "up to the last one polled, so a profile is loaded once per pending day instead of "
        "once (the bench's shop at 50: 72% more loads, +21% CPU per event). Too many and "
        "one batch holds the events behind it while thousands due at once are decided. A "
        "larger batch may take more: see CDPULSE_DUE_PER_MESSAGE.",
    )
    due_per_message: float = Field(
        0.1,
        ge=0,
        description="Due profiles a worker's batch may load per message it holds, per shard "
        "and schedule, when that is more than CDPULSE_DUE_PER_BATCH: a batch covers event "
        "time in proportion to its messages, and what came due in it. With a fixed 500, the "
        "bench's backlog in batches of 40,000 left ~53,000 churn labels to decide after "
        "its last event, where batches of 5,000 decided them as they came.",
    )
    profile_cache: int = Field(
        50_000,
        ge=0,
        description="Profiles a worker keeps decoded between batches (0: none; ~6 KB each); "
        "Redis stays the truth: every save is a compare-and-set.",
    )
    batch_within: float = Field(
        0.005,
        gt=0,
        description="Most seconds an idle worker waits for its batch to fill after the "
        "batch's first event (it adds to those events' latency). Events that queued while "
        "the worker decided the batch before are the next batch at once, with no wait; "
        "under a backlog a batch is full (CDPULSE_BATCH_SIZE) at once.",
    )
    learner_batch_within: float = Field(
        1.0,
        gt=0,
        description="Seconds the churn, campaign, persona and offer learners wait to fill a "
        "batch. Each batch ends with a published snapshot, which workers and the api load "
        "every CDPULSE_MODEL_REFRESH_SECONDS: fuller batches make fewer, for the same models.",
    )
    reco_batch_within: float = Field(
        0.1,
        gt=0,
        description="Seconds the recommender's learner waits to fill a batch. Its lists are "
        "published after each batch, so the wait adds to produce → recommendation latency.",
    )
    commit_interval: float = Field(1.0, gt=0, description="Seconds between offset commits.")
    prefetch: int = Field(
        80_000,
        ge=1,
        description="Messages a worker or learner fetches ahead of its batches (faust's "
        "stream buffer): with faust's 4,096 the fetch paused and the worker waited.",
    )
    prefetch_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of messages a worker or learner fetches ahead of its batches, "
        "at most: large messages are fetched fewer than CDPULSE_PREFETCH at a time "
        "(never fewer than 1,000).",
    )
    produce_batch_bytes: int = Field(
        1_000_000,
        ge=16 * 1024,
        description="Bytes of one record batch the roles produce per partition, at most; "
        "keep it under the broker's message.max.bytes (1 MB by default). aiokafka sends one "
        "batch per partition per round trip: with faust's 16 KB a worker's batch of item "
        "events took ~5 round trips (~30 ms) the next batch waited for.",
    )
    produce_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds a record the roles publish may wait for the broker's "
        "acknowledgement (faust's producer_request_timeout, 20 minutes by default). A batch "
        "not acknowledged by then fails before its Redis write claims its trigger ids, and "
        "is retried with the same ids: a broker outage shows as failing batches "
        "(cdpulse_kafka_errors_total, /readyz) instead of one batch silently waiting.",
    )
    fetch_min_bytes: int = Field(
        64 * 1024,
        ge=1,
        description="Bytes the broker gathers before it answers a worker's or learner's "
        "fetch (or CDPULSE_FETCH_MAX_WAIT passed): a consumer that keeps up fetches fewer, "
        "fuller batches; on the bench the broker's CPU per event fell by more than half.",
    )
    fetch_max_wait: float = Field(
        0.02,
        gt=0,
        le=1.5,
        description="Seconds the broker holds a fetch waiting for CDPULSE_FETCH_MIN_BYTES: "
        "at most this much is added to an event's latency when traffic is low.",
    )
    coordinator_check_seconds: float = Field(
        5.0,
        gt=0,
        description="Seconds between two checks of each role's Kafka group coordination "
        "(aiokafka's background tasks in the consumer thread): a task that ended, which "
        "aiokafka would never start again, is started again at the next check.",
    )
    coordinator_stall_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds a role's consumer may go without a group coordinator before it "
        "asks the broker for one itself: if the broker names one that aiokafka still has not "
        "found a check later, aiokafka's coordination is restarted in the process.",
    )
    gc_sweep_seconds: float = Field(
        300.0,
        gt=0,
        description="Seconds between full garbage collections of a worker, learner or api "
        "(between them, what survives a batch or a model refresh is frozen).",
    )
    learner_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Niceness the learner lowers itself to at start (os.nice): sharing a "
        "machine with a worker or an api, its bursts (lists, snapshots, refits) wait for "
        "their batches and reads instead of delaying them; it still takes every idle cycle "
        "(BENCHMARKS.md measures both). 0 on a machine of its own.",
    )
    stall_seconds: float = Field(
        30.0,
        gt=0,
        description="A process whose batches keep failing this long answers /readyz with 503.",
    )
    offset_reset: str = Field(
        "earliest", description="Where a new consumer group starts: earliest or latest."
    )

    # --- contract ----------------------------------------------------------------------
    max_event_bytes: int = Field(65536, ge=1024, description="Largest accepted event, bytes.")
    max_future_skew_seconds: float = Field(
        300.0, ge=0, description="How far in the future an event timestamp may be."
    )
    custom_event_schemas: str = Field(
        "",
        description="Folder of JSON Schemas for custom events, one <name>.json per event "
        "name (its properties); checked at start-up. A custom event whose registered schema "
        "it violates is dead-lettered schema_violation with the failing path; empty: no "
        "schemas.",
    )

    # --- profile rules -----------------------------------------------------------------
    session_gap_seconds: int = Field(
        1800, ge=60, description="Inactivity (event time) that ends a session."
    )
    affinity_half_life_days: float = Field(
        14.0, gt=0, description="Half-life of the decayed category affinity."
    )
    dedupe_window_days: int = Field(
        7,
        ge=1,
        description="A repeated event_id is dropped as a client duplicate while its first "
        "copy's event-time day is at most this many days before the newest of its source "
        "(topic, partition, key), however many events came between; older repeats are "
        "applied again.",
    )
    dedupe_ids_kept: int = Field(
        10_000,
        ge=0,
        description="Event ids a profile's dedupe window keeps at most (8 bytes each); "
        "beyond it the oldest go first, counted in cdpulse_dedupe_ids_dropped_total "
        "(0: no client-side dedupe).",
    )

    cart_lines_kept: int = Field(
        100,
        ge=1,
        description="Products a profile's open cart keeps at most: beyond it the cart is "
        "trimmed like a checkout, up to the change of the most recently changed product "
        'that no longer fits; counted in cdpulse_profile_list_dropped_total{list="cart"}.',
    )
    affinity_categories_kept: int = Field(
        100,
        ge=1,
        description="Categories a profile's affinity keeps at most, the strongest; a "
        "category dropped and seen again starts from zero; counted in "
        'cdpulse_profile_list_dropped_total{list="affinity"}.',
    )
    custom_names_kept: int = Field(
        32,
        ge=1,
        description="Custom event names a profile counts at most besides those with a "
        "registered schema (always counted): the first in alphabetical order, so the "
        "result does not depend on arrival order; the events of the others are counted in "
        'cdpulse_profile_list_dropped_total{list="custom_names"}.',
    )

    # --- online models -----------------------------------------------------------------
    churn_model: str = Field("logistic", description="Churn pipeline: logistic or forest.")
    churn_horizon_days: float = Field(
        30.0, gt=0, description="No activity for this long (event time) labels a churner."
    )
    churn_snapshot_days: int = Field(
        1, ge=1, description="Days between two churn snapshots (training examples) of a customer."
    )
    churn_lateness_seconds: float = Field(
        300.0,
        ge=0,
        description="How late (event time) an event may arrive behind its partition's newest.",
    )
    campaign_response_days: float = Field(
        7.0,
        gt=0,
        description="A campaign exposure (an email opened, an offer shown) is labelled 1 when "
        "the customer clicks that email or redeems that offer within this many days (event "
        "time), 0 otherwise; decided once every partition is past it by the churn lateness.",
    )
    persona_k: int = Field(
        5, ge=2, description="Personas: how many clusters the learner keeps (k of k-means)."
    )
    persona_warmup: int = Field(
        200,
        ge=2,
        description="Persona examples buffered before the first centres are seeded "
        "(k-means++); no personas before. At least persona_k.",
    )
    persona_checkpoint_examples: int = Field(
        500,
        ge=1,
        description="Persona examples between checkpoints: persona ids are matched to the "
        "last checkpoint's, and stability is measured between two.",
    )
    clv_horizon_days: float = Field(
        90.0, gt=0, description="Horizon of expected purchases and value (lifetime value)."
    )
    clv_refit_seconds: float = Field(
        60.0,
        gt=0,
        description="How often the learner refits the lifetime-value parameters (under a "
        "Redis lock: one learner at a time).",
    )
    forecast_products: int = Field(
        20,
        ge=0,
        description="Products with the most units sold so far that get a demand forecast "
        "of their own (categories and the shop always have one).",
    )
    forecast_lateness_seconds: float = Field(
        3600.0,
        ge=0,
        description="How long (event time) after a day's end, behind every input "
        "partition's newest event, the demand forecasts wait before learning the day.",
    )
    forecast_max_gap_days: int = Field(
        90,
        ge=0,
        description="Longest run of days with nothing counted that the demand forecasts "
        "learn as days without a sale; after a longer silence they start afresh on the "
        "next day with an event (an order dated 1970 is not followed by 56 years of zeros).",
    )
    forecast_learn_seconds: float = Field(
        30.0,
        gt=0,
        description="How often the learner learns the days closed since (demand forecasts).",
    )
    reco_served_lists: int = Field(
        10_000,
        ge=0,
        description="Recommendation lists an api process keeps, the most recently read: a "
        "customer read again under the same recommender snapshot with the same cart, recent "
        "views and category affinity gets the list computed before (0: none kept).",
    )
    reco_snapshot_seconds: float = Field(
        5.0, gt=0, description="How often the recommender's learner publishes a snapshot."
    )
    reco_list_interval_seconds: float = Field(
        30.0,
        ge=0,
        description=(
            "Event-time seconds between two recommendation lists published for one "
            "customer (0: one per batch with an item event)."
        ),
    )
    model_refresh_seconds: float = Field(
        15.0,
        gt=0,
        description="How often the worker and the api look for newer model snapshots (the "
        "learner: for the other learners' recommender shards, and how long its lists are "
        "served from one merged view of the shards). Each newer one is loaded "
        "and swapped in between two batches: ~40-90 ms of a worker's CPU per refresh, "
        "which the events arriving meanwhile wait for (cdpulse_model_refresh_seconds).",
    )

    # --- drift (README: Online models, Drift) -------------------------------------------
    drift_window_days: int = Field(
        7,
        ge=1,
        description="Days of event time, up to the newest, whose model inputs and scores are "
        "compared with the reference for drift.",
    )
    drift_reference_days: int = Field(
        28,
        ge=1,
        description="Days of event time before the recent window that are its reference, "
        "unless CDPULSE_DRIFT_REFERENCE pins one.",
    )
    drift_reference: tuple[datetime, datetime] | None = Field(
        None,
        description="A reference the operator pins: a JSON pair of RFC 3339 times, "
        '["2026-11-01T00:00:00Z", "2026-11-29T00:00:00Z"] (event time, end excluded); the '
        "learners keep those days' histograms for as long as it is set.",
    )
    drift_psi_threshold: float = Field(
        0.25,
        gt=0,
        description="PSI of an input or the score from which a model's drift_status is "
        "'drifted' (0.1 and above: 'moderate').",
    )
    drift_seconds: float = Field(
        60.0,
        gt=0,
        description="How often the learner saves its drift histograms and computes each "
        "model's drift report (under a Redis lock: one learner at a time).",
    )

    # --- model health (README: Online models, Model health) -----------------------------
    model_auc_floor: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="Live (prequential) ROC AUC below which a model's health is 'degraded'; "
        "an input whose PSI reaches CDPULSE_DRIFT_PSI_THRESHOLD degrades it too.",
    )
    model_health_ignored_inputs: tuple[str, ...] = Field(
        ("tenure_days",),
        description="Model inputs whose drift does not degrade a model's health (still "
        "reported as drift): tenure grows with the shop's own age, so its distribution "
        "moves by itself wherever customers keep coming back.",
    )
    model_health_min_examples: int = Field(
        200,
        ge=1,
        description="Labels a model has been measured on before its live quality counts: "
        "with fewer, its health is 'unknown' (unless an input drifted).",
    )

    # --- input data quality (README: Operating it, Input data quality) ----------------
    input_sample: int = Field(
        10,
        ge=1,
        description="A worker reads one input event in this many (by a hash of its id) for "
        "the data-quality shares and distributions (optional fields, amounts, categories, "
        "lateness); volume and freshness count every event (1: read every event).",
    )

    # --- fairness (README: Online models, Fairness) ------------------------------------
    fairness_groups: list[str] = Field(
        ["country", "channel", "tenure"],
        description="Group attributes the fairness report compares (JSON list): channel (the "
        "profile's most used), tenure (new: at most one order, or returning) and "
        "allow-listed traits that are not personal (country, language, plan).",
    )
    fairness_seconds: float = Field(
        600.0,
        gt=0,
        description="How often the learner recomputes GET /v1/fairness over the customers "
        "of its recent churn examples (under a Redis lock: one learner at a time).",
    )

    # --- segments and experiments ------------------------------------------------------
    segments_file: str = Field(
        "",
        description="YAML/JSON file of custom segments and experiments; empty: RFM segments only.",
    )
    rfm_refresh_seconds: float = Field(
        30.0,
        gt=0,
        description="How often the learner rebuilds the RFM quantile sketches and sweeps "
        "every customer's RFM segment (under a Redis lock: one learner at a time).",
    )

    # --- privacy and security (README: Privacy and security) -------------------------------
    pseudonym_key: SecretStr = Field(
        SecretStr(""),
        description="Secret key of the HMAC-SHA256 pseudonyms of personal traits and ids; "
        "no role starts without one.",
    )
    trait_allow_list: list[str] = Field(
        ["email", "phone", "country", "language", "plan"],
        description="Identify traits kept in profiles (JSON list); others are dropped.",
    )
    personal_traits: list[str] = Field(
        ["email", "phone"],
        description="Allowed traits that are personal: kept only as pseudonyms (JSON list).",
    )

    api_tokens: dict[str, ApiToken] = Field(
        {},
        description="HTTP API bearer tokens: JSON {name: {secret, scopes: [ingest, identity, "
        "read, assign, admin], origins: [web pages that may send with it]}}; no role starts "
        "without any unless auth_disabled.",
    )
    auth_disabled: bool = Field(
        False, description="Serve the HTTP API without tokens: local development only."
    )
    metrics_public: bool = Field(
        True, description="Serve /metrics without a token (else the read scope is needed)."
    )
    health_public: bool = Field(
        True,
        description="Serve /healthz and /readyz without a token (else the read scope is needed).",
    )
    request_rate: float = Field(
        2000.0,
        gt=0,
        description="Requests per second each token may make to any route that needs a "
        "scope, per api process (429 with Retry-After above it; the collector's "
        "CDPULSE_INGEST_RATE counts events on top).",
    )
    request_burst: int = Field(
        4000,
        ge=1,
        description="Requests a token may make at once before CDPULSE_REQUEST_RATE applies.",
    )
    ingest_rate: float = Field(
        1000.0,
        gt=0,
        description="Events per second each token may post to the collector, per api process.",
    )
    ingest_burst: int = Field(
        5000, ge=1, description="Events a token may post at once before the rate applies."
    )
    profile_retention_days: float = Field(
        395.0,
        ge=0,
        description="Profiles, identity links and data keys not written for this long "
        "expire (0: kept until erased).",
    )

    # --- triggers and offers -----------------------------------------------------------
    trigger_rules: str = Field(
        "", description="YAML file of trigger rules; empty: the built-in rules."
    )
    trigger_lateness_seconds: float = Field(
        60.0,
        ge=0,
        description="How late (event time) an event may arrive and still count for a trigger.",
    )
    offer_epsilon: float = Field(
        0.1, gt=0, le=1, description="Share of offers the bandit draws at random (exploration)."
    )

    @field_validator("drift_reference")
    @classmethod
    def _a_range_in_time(
        cls, pinned: tuple[datetime, datetime] | None
    ) -> tuple[datetime, datetime] | None:
        if pinned is None:
            return None
        start, end = pinned
        if start.tzinfo is None or end.tzinfo is None or start >= end:
            raise ValueError(
                f"CDPULSE_DRIFT_REFERENCE must be two RFC 3339 times with a zone, the first "
                f'before the second, e.g. \'["2026-11-01T00:00:00Z", '
                f'"2026-11-29T00:00:00Z"]\'; got {start.isoformat()} .. {end.isoformat()}'
            )
        return pinned

    @model_validator(mode="after")
    def _fairness_groups_are_declared(self) -> Settings:
        for name in self.fairness_groups:
            if name in self.personal_traits:
                raise ValueError(
                    f"CDPULSE_FAIRNESS_GROUPS names {name!r}, a personal trait: kept only as "
                    "pseudonyms, its groups would be single customers; drop it"
                )
            if name not in FAIRNESS_BUILT_IN and name not in self.trait_allow_list:
                raise ValueError(
                    f"CDPULSE_FAIRNESS_GROUPS names {name!r}, which is neither channel, tenure "
                    "nor a trait on CDPULSE_TRAIT_ALLOW_LIST; add it there or drop it"
                )
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"CDPULSE_REDIS_URL {parts.scheme}://… : the scheme must be one of "
                f"{', '.join(s + '://' for s in REDIS_SCHEMES)} (the +cluster ones for a "
                "Redis Cluster)"
            )
        if parts.scheme.endswith(CLUSTER_SUFFIX) and parts.path.strip("/") not in ("", "0"):
            raise ValueError(
                f"CDPULSE_REDIS_URL names database {parts.path.strip('/')!r}: a Redis Cluster "
                "has database 0 only; drop the path"
            )
        return url

    @property
    def redis_cluster(self) -> bool:
        """Whether CDPULSE_REDIS_URL names a Redis Cluster (``redis+cluster://``): the
        roles then use redis-py's cluster client and the cluster key layout
        (``store/keys.py``)."""
        return urlsplit(self.redis_url).scheme.endswith(CLUSTER_SUFFIX)

    @model_validator(mode="after")
    def _cluster_prefix(self) -> Settings:
        if self.redis_cluster and ("{" in self.redis_prefix or "}" in self.redis_prefix):
            raise ValueError(
                f"CDPULSE_REDIS_PREFIX {self.redis_prefix!r} holds a brace: in a Redis Cluster "
                "a key's hash tag is its first {…}, which must be cdpulse's own; choose a "
                "prefix without { and }"
            )
        return self

    @model_validator(mode="after")
    def _replicas_fit(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication:
            raise ValueError(
                f"CDPULSE_TOPIC_MIN_INSYNC_REPLICAS={self.topic_min_insync_replicas} exceeds "
                f"CDPULSE_TOPIC_REPLICATION={self.topic_replication}: no acks=all write could "
                "succeed; lower it (1 for a single broker)"
            )
        return self

    @model_validator(mode="after")
    def _persona_warmup_seeds_k(self) -> Settings:
        if self.persona_warmup < self.persona_k:
            raise ValueError(
                f"CDPULSE_PERSONA_WARMUP={self.persona_warmup} is below CDPULSE_PERSONA_K="
                f"{self.persona_k}: k-means++ needs at least k points to seed k personas; "
                "raise the warm-up or lower k"
            )
        return self


class ConfigurationError(Exception):
    """The settings do not fit what the process found (a broker count, a file): the
    message names the setting and the fix; the command line exits 2 with it."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
