"""Every Prometheus metric cdpulse exports, declared once.

Labels carry topics, partitions, event types, reasons and operations: never a
customer id or any other personal data.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the output and say nothing an operator uses.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Event time -> written can be hours for a replay, so the buckets reach a day. Below a
# second they lie a few ms apart, so `cdpulse bench` can read p50/p99 at a live rate;
# the 14 extra bounds cost an observe 0.2-0.3 us (measured).
_LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.06,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.5,
    0.75,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    3600,
    86400,
)

SNAPSHOTS_REFUSED = Counter(
    "cdpulse_snapshots_refused_total",
    "Model snapshots in Redis not loaded because their seal did not verify.",
    ["model"],
)
EVENTS_CONSUMED = Counter(
    "cdpulse_events_consumed_total", "Valid events consumed, by topic and type.", ["topic", "type"]
)
EVENTS_REJECTED = Counter(
    "cdpulse_events_rejected_total",
    "Messages sent to the dead-letter topic, by reason.",
    ["reason"],
)
EVENTS_APPLIED = Counter("cdpulse_events_applied_total", "Events applied to a profile.")
DUPLICATES = Counter(
    "cdpulse_duplicates_total", "Events skipped because they were applied already.", []
)
DEDUPE_IDS_DROPPED = Counter(
    "cdpulse_dedupe_ids_dropped_total",
    "Event ids a profile's dedupe window dropped at CDPULSE_DEDUPE_IDS_KEPT before the "
    "window passed them: a client's repeat of one would be applied again.",
)
PROFILE_LIST_DROPPED = Counter(
    "cdpulse_profile_list_dropped_total",
    "Entries a per-profile list's cap dropped, by list (profile/limits.py): cart lines, "
    "cart changes, affinity categories, one session's viewed products (watch_views).",
    ["list"],
)
PROFILE_MERGES = Counter(
    "cdpulse_profile_merges_total", "Anonymous profiles merged into a customer on identify."
)
LINK_CONFLICTS = Counter(
    "cdpulse_link_conflicts_total",
    "Identify events naming an anonymous id already linked to another customer.",
)
IDENTITY_REFUSED = Counter(
    "cdpulse_identity_refused_total",
    "Identify events whose link the identity rules refused (dead-lettered), by rule.",
    ["rule"],
)
CUSTOMER_MERGES = Counter(
    "cdpulse_customer_merges_total",
    "Admin merges of two known customers (customers_merged): outcome 'merged', or the "
    "rule that refused it (dead-lettered merge_refused).",
    ["outcome"],
)
SAVE_RETRIES = Counter("cdpulse_save_retries_total", "Profile saves retried, by cause.", ["cause"])
CLUSTER_RETIRES_KEPT = Counter(
    "cdpulse_cluster_retires_kept_total",
    "Redis Cluster only: merged profiles written after their merge's hold expired, kept "
    "instead of deleted (their later events are not in their customer: cdpulse rebuild).",
)
REDIS_UNREPLICATED = Counter(
    "cdpulse_redis_unreplicated_writes_total",
    "Redis Cluster only: write round trips a master acknowledged while no replica held "
    "its writes within 0.5 s (a replica down or behind): lost if that master dies before "
    "its replica catches up (cdpulse rebuild repairs).",
)
REDIS_ERRORS = Counter(
    "cdpulse_redis_errors_total", "Redis calls that failed and were retried after a backoff."
)
EVENT_TO_WRITTEN = Histogram(
    "cdpulse_event_to_written_seconds",
    "Event time to profile written.",
    buckets=_LATENCY_BUCKETS,
)
INGEST_TO_WRITTEN = Histogram(
    "cdpulse_ingest_to_written_seconds",
    "Kafka append time to profile written.",
    buckets=_LATENCY_BUCKETS,
)
INGEST_TO_RECOMMENDATION = Histogram(
    "cdpulse_ingest_to_recommendation_seconds",
    "Kafka append time of an item event to its recommendation list taken by the broker.",
    buckets=_LATENCY_BUCKETS,
)
BATCH_STEP = Histogram(
    "cdpulse_batch_step_seconds",
    "Where a worker's batch spends its time, by step: waited (its oldest message's Kafka "
    "append time to the batch taken from the stream), decided (read and every stage), "
    "written (then published and written, after the batch before it).",
    ["step"],
    buckets=_LATENCY_BUCKETS,
)
MODEL_SWAP = Histogram(
    "cdpulse_model_refresh_seconds",
    "A worker's refresh that found newer model snapshots: loading them and waiting for "
    "the batches in flight before the swap (no batch begins meanwhile).",
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "cdpulse_batch_size",
    "Messages per processed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 40000, 80000),
)
PROFILES_SAVED = Counter(
    "cdpulse_profiles_saved",
    "Profiles a worker saved, by why its batch loaded them: events (or a merge) of the "
    "batch, or only something that came due (a churn, campaign or persona label, a "
    "trigger's timer). Each of the second kind is a load, a decision and a write of its "
    "own; at real-time batch sizes they can be most of a worker's saves (BENCHMARKS.md).",
    ["cause"],
)
ROUND_TRIPS = Histogram(
    "cdpulse_batch_round_trips",
    "Redis round trips per processed batch (a typical one makes two: a read and a write).",
    buckets=(1, 2, 3, 4, 6, 10, 20),
)
REDIS_SECONDS = Histogram(
    "cdpulse_redis_seconds",
    "Redis round trips, by operation.",
    ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
CONSUMER_LAG = Gauge(
    "cdpulse_consumer_lag", "Messages not yet processed, per partition.", ["topic", "partition"]
)
ASSIGNED_PARTITIONS = Gauge(
    "cdpulse_assigned_partitions",
    "Input partitions this process consumes now (0 while a rebalance is in progress).",
)
LEARNER_LAG = Gauge(
    "cdpulse_learner_lag",
    "Messages of the learner's topics (training, reco events, offer rewards) not yet "
    "learned, per partition.",
    ["topic", "partition"],
)
HTTP_SECONDS = Histogram(
    "cdpulse_http_request_seconds",
    "HTTP requests answered, by route pattern (never the path) and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
PROFILES = Gauge("cdpulse_profiles", "Profiles stored.")
WATERMARK = Gauge("cdpulse_watermark_seconds", "Newest event time applied (epoch seconds).")
COLLECTOR_EVENTS = Counter(
    "cdpulse_collector_events_total",
    "Events posted to the HTTP collector, by outcome.",
    ["outcome"],
)
READY = Gauge(
    "cdpulse_ready", "1 while this process's batches get through, 0 while they keep failing."
)
KAFKA_ERRORS = Counter(
    "cdpulse_kafka_errors_total", "Kafka requests that failed (the step is retried)."
)
BATCH_FAILURES = Counter(
    "cdpulse_batch_failures_total", "Batches that raised unexpectedly and were retried."
)
MODEL_ROC_AUC = Gauge(
    "cdpulse_model_roc_auc",
    "Rolling ROC AUC of the model's predictions on the labels that arrived (test-then-train); "
    "NaN while unknown (cdpulse_model_quality_defined).",
    ["model"],
)
MODEL_LOG_LOSS = Gauge(
    "cdpulse_model_log_loss",
    "Rolling log loss of the model on the labels that arrived; NaN while unknown.",
    ["model"],
)
MODEL_QUALITY_DEFINED = Gauge(
    "cdpulse_model_quality_defined",
    "1 once a quality figure is defined, 0 while it is unknown (models/quality.py): roc_auc "
    "and drift need both classes among the last 2000 labels, log_loss one label.",
    ["model", "metric"],
)
MODEL_HEALTH = Gauge(
    "cdpulse_model_health",
    "The health of the newest snapshot (models/health.py): 0 ok, 1 degraded (live AUC "
    "below CDPULSE_MODEL_AUC_FLOOR or an input drifted), NaN while unknown "
    '(cdpulse_model_quality_defined{metric="health"} 0).',
    ["model"],
)
MODEL_EXAMPLES = Gauge("cdpulse_model_examples", "Labelled examples the model learned.", ["model"])
MODEL_VERSION = Gauge("cdpulse_model_version", "Version of the newest model snapshot.", ["model"])
# Personas (models/personas_learner.py ``quality``): measured on the newest points learned.
PERSONA_SILHOUETTE = Gauge(
    "cdpulse_persona_silhouette", "Mean silhouette of the newest persona points learned."
)
PERSONA_STABILITY = Gauge(
    "cdpulse_persona_stability",
    "Share of the newest points kept in the same persona id between the last two checkpoints.",
)
PERSONA_SIZE = Gauge("cdpulse_persona_size", "Points each persona has learned from.", ["persona"])
PERSONA_SHARE = Gauge(
    "cdpulse_persona_share", "Share of the newest points learned nearest each persona.", ["persona"]
)
MODEL_DRIFT_ALARMS = Gauge(
    "cdpulse_model_drift_alarms",
    "ADWIN drift alarms raised on the model's error stream while both classes were in the "
    "window (with one class the error stream is the model's own score).",
    ["model"],
)
MODEL_DRIFT_PSI = Gauge(
    "cdpulse_model_drift_psi",
    "PSI of a model's input (or of its 'score') over the recent window against the "
    "reference (models/drift.py); NaN while unknown.",
    ["model", "feature"],
)
MODEL_DRIFT_STATUS = Gauge(
    "cdpulse_model_drift_status",
    "A model's drift_status: 0 stable, 1 moderate, 2 drifted; NaN while unknown "
    "(cdpulse_model_quality_defined{metric='input_drift'} 0).",
    ["model"],
)
CHURN_LABELS = Counter(
    "cdpulse_churn_labels_total",
    "Churn snapshots labelled, by label (0 active, 1 churned).",
    ["label"],
)
CAMPAIGN_LABELS = Counter(
    "cdpulse_campaign_labels_total",
    "Campaign exposures labelled, by label (1: clicked or redeemed within the window).",
    ["label"],
)
SEND_TIME_OPENS = Counter(
    "cdpulse_send_time_opens_total",
    "Email opens of customers with a send window, by whether the open fell inside it "
    "(hit) or not (miss): the live hit rate `cdpulse evaluate send-time` measures.",
    ["outcome"],
)
NEXT_PURCHASE_ORDERS = Counter(
    "cdpulse_next_purchase_orders_measured_total",
    "Repeat orders the next purchase was measured at: customers with two orders or more "
    "before, allowing analytics and personalization.",
)
NEXT_PURCHASE_ERROR = Counter(
    "cdpulse_next_purchase_error_seconds_total",
    "Absolute error of the next order expected before each measured order, in whole "
    "seconds, by predictor (model: the profile's next purchase; own_gap: last order plus "
    "the customer's own mean gap). MAE = this / orders measured; "
    "`cdpulse evaluate next-purchase` measures the same.",
    ["predictor"],
)
CLV_CUSTOMERS = Gauge(
    "cdpulse_clv_customers", "Customers with orders the last lifetime-value refit saw."
)
RECOMMENDATIONS = Counter(
    "cdpulse_recommendation_lists_total", "Recommendation lists published on item events."
)
RECO_EVENTS_LEARNED = Counter(
    "cdpulse_reco_events_learned_total", "Item events the recommender's learner folded in."
)

# --- segments and experiments ----------------------------------------------------------
SEGMENT_SIZE = Gauge("cdpulse_segment_size", "Customers in each segment.", ["segment"])
SEGMENT_TRANSITIONS = Counter(
    "cdpulse_segment_transitions_total",
    "Segment transitions published, by segment and change (entered, left).",
    ["segment", "change"],
)
SEGMENT_ERRORS = Counter(
    "cdpulse_segment_errors_total",
    "Segment conditions that raised on a profile (counted as not a member), by segment.",
    ["segment"],
)
RFM_CUSTOMERS = Gauge("cdpulse_rfm_customers", "Customers in the newest RFM sketches.")
EXPERIMENT_EXPOSURES = Gauge(
    "cdpulse_experiment_exposures",
    "Customers exposed, by experiment and variant.",
    ["experiment", "variant"],
)
EXPERIMENT_CONVERSIONS = Gauge(
    "cdpulse_experiment_conversions",
    "Exposed customers who converted, by experiment and variant.",
    ["experiment", "variant"],
)

# --- privacy -------------------------------------------------------------------------------
TRAITS_DROPPED = Counter(
    "cdpulse_traits_dropped_total", "Identify traits dropped: not on the trait allow-list."
)
EVENTS_SUPPRESSED = Counter(
    "cdpulse_events_of_erased_total", "Events dropped because their customer was erased."
)
ERASURES = Counter("cdpulse_erasures_total", "Erasure requests carried out.")
# --- input data quality (monitors/inputs.py) ----------------------------------------
INPUT_FIELDS = Counter(
    "cdpulse_input_optional_fields_total",
    "Optional fields of the input events read (one in CDPULSE_INPUT_SAMPLE), by type, field "
    "and state (present, absent: null or missing).",
    ["type", "field", "state"],
)
INPUT_VALUE = Histogram(
    "cdpulse_input_value",
    "Amounts in the input events read (prices, quantities, revenues, refunds, cart values).",
    ["type", "field"],
    buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 1e4, 1e5, 1e6),
)
INPUT_LATENESS = Histogram(
    "cdpulse_input_lateness_seconds",
    "Kafka append time minus event time of the input events read, by topic.",
    ["topic"],
    buckets=(0.1, 1, 5, 30, 60, 300, 900, 3600, 21600, 86400, 604800),
)
INPUT_CATEGORIES = Counter(
    "cdpulse_input_categories_total",
    "Product categories in the input events read: seen within 7 days of event time, or new.",
    ["type", "state"],
)
INPUT_NEWEST = Gauge(
    "cdpulse_input_newest_event_seconds",
    "Newest event time seen on an input topic by this worker (epoch seconds).",
    ["topic"],
)
INPUT_VOLUME = Gauge(
    "cdpulse_input_volume_ratio",
    "Events of the last complete event-time hour over the mean of the same hour on the 7 "
    "days before (those watched), by topic and type (0: stalled); NaN while unknown.",
    ["topic", "type"],
)
INPUT_GATE_FLAGS = Counter(
    "cdpulse_input_gate_flags_total",
    "Event-time hours this worker judged a model's inputs broken in, by model and reason "
    "(nulls:<type>.<field>, unit:<type>.<field>, stalled:<stream>; monitors/health.py).",
    ["model", "reason"],
)
INPUT_GATE_FLAGGED = Gauge(
    "cdpulse_input_gate_flagged",
    "1 while the newest judged event-time hour of a model's inputs is flagged (any worker), "
    "by model: its gated trigger rules fire nothing; 0 when healthy.",
    ["model"],
)
INPUT_VOLUME_BASELINE = Gauge(
    "cdpulse_input_volume_baseline",
    "The mean events an hour cdpulse_input_volume_ratio divides by (0: none).",
    ["topic", "type"],
)
READ_AUDIT_SENT = Counter(
    "cdpulse_read_audit_sent_total",
    "Read audit records the api sent to the read-audit topic (acknowledged).",
)
READ_AUDIT_DROPPED = Counter(
    "cdpulse_read_audit_dropped_total",
    "Reads served without their audit record: the api's queue was full (Kafka did not take them).",
)
READ_AUDIT_QUEUED = Gauge(
    "cdpulse_read_audit_queued", "Read audit records the api holds, not yet sent."
)
AUTH_DENIED = Counter(
    "cdpulse_http_denied_total",
    "HTTP requests the guard refused, by status: 401 no token, 403 scope, 429 over the rate.",
    ["status"],
)

# --- triggers and offers -------------------------------------------------------------------
TRIGGERS = Counter(
    "cdpulse_triggers_total",
    "Trigger situations decided, by rule and outcome (fired, holdout, no_consent, cooldown, "
    "capped, gated, suppressed, held).",
    ["rule", "outcome"],
)
TRIGGERS_GATED = Counter(
    "cdpulse_triggers_gated_total",
    "Trigger situations suppressed because a model their rule is gated by had broken inputs "
    "at their time, by rule and reason (<model>:<input reason>).",
    ["rule", "reason"],
)
TRIGGERS_MODEL_GATE = Counter(
    "cdpulse_triggers_model_gate_total",
    "Churn crossings scored by a degraded churn model (models/health.py), by rule and what "
    "the rule's on_degraded made of them: suppress, hold, or fallback (its condition fired "
    "the situation, decided as usual).",
    ["rule", "action"],
)
TRIGGER_CONVERSIONS = Counter(
    "cdpulse_trigger_conversions_total",
    "Attribution windows closed with an order or redemption, by rule and group.",
    ["rule", "group"],
)
OFFER_REWARDS = Counter(
    "cdpulse_offer_rewards_total",
    "Offer outcomes the bandit's learner folded in, by rule and reward (1 converted).",
    ["rule", "reward"],
)
FORECAST_MAE = Gauge(
    "cdpulse_forecast_mae",
    "Demand forecasts: mean absolute error of the forecasts scored so far (test-then-train), "
    "per level (shop, category, product), target (units, revenue) and horizon in days "
    "(1, 7, 28, or all for 1-28).",
    ["level", "target", "horizon"],
)
FORECAST_MASE = Gauge(
    "cdpulse_forecast_mase",
    "Demand forecasts: MAE over seasonal-naive's MAE on the same days (below 1: better than "
    "repeating last week); NaN while seasonal-naive made no error.",
    ["level", "target", "horizon"],
)
FORECAST_ACTUAL = Gauge(
    "cdpulse_forecast_actual",
    "Demand forecasts: the newest learned day's total (units: orders for the shop), summed "
    "over the level's series that had a forecast for it, beside cdpulse_forecast_predicted.",
    ["level", "target"],
)
FORECAST_PREDICTED = Gauge(
    "cdpulse_forecast_predicted",
    "Demand forecasts: what the forecasts made the day before predicted for the newest "
    "learned day, summed over the same series (NaN while none had one).",
    ["level", "target"],
)
FORECAST_LEARNED_DAY = Gauge(
    "cdpulse_forecast_learned_day",
    "Demand forecasts: the newest day learned, as days since 1970-01-01 (UTC).",
)
