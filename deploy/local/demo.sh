#!/usr/bin/env bash
# `make demo`: the whole engine on one machine, fed by a simulated shop.
#
# Starts Kafka and Redis (unless they run), the three process roles (`cdpulse worker`,
# `cdpulse learner`, `cdpulse api`), generates a seeded shop (2000 customers, 90 days),
# backfills its first 60 days as fast as the worker takes them, then streams the last 30
# in at 2000 events/s, on topics and Redis keys named for this run (demo-<date>-<time>.*;
# `make clean` removes them all). The history is what gives the models something to show
# within minutes: churn labels need customers silent for the 30-day horizon (with 30 days
# alone every label was 0), lifetime value needs repeat buyers. Prints the URL of one live
# profile and of every role's /metrics, then a line every few seconds: what each model has
# learned so far, and that profile's counts, until Ctrl-C, which stops the roles and the
# stack this script started.
#
# Settings: those of stack.sh, plus CDPULSE_WEB_PORT (the api, 6066), CDPULSE_WORKER_PORT
# (6067), CDPULSE_LEARNER_PORT (6068), CDPULSE_BIN (.venv/bin/cdpulse) and
# CDPULSE_DEMO_HISTORY_DAYS (60; 0 streams the 30 live days alone).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HERE=$REPO_ROOT/deploy/local
CDPULSE=${CDPULSE_BIN:-$REPO_ROOT/.venv/bin/cdpulse}
EVENTS=$CDPULSE_RUN_DIR/demo-events.jsonl
HISTORY=$CDPULSE_RUN_DIR/demo-history.jsonl
LIVE=$CDPULSE_RUN_DIR/demo-live.jsonl
HISTORY_DAYS=${CDPULSE_DEMO_HISTORY_DAYS:-60}
LIVE_DAYS=30
BASE_URL=http://127.0.0.1:$CDPULSE_WEB_PORT
CDPULSE_WORKER_PORT=${CDPULSE_WORKER_PORT:-6067}
CDPULSE_LEARNER_PORT=${CDPULSE_LEARNER_PORT:-6068}
HEALTH_TIMEOUT=${CDPULSE_WORKER_START_TIMEOUT:-120}

# stack.sh reads the same ports and folders; the roles and the CLI read the two URLs.
export CDPULSE_KAFKA_PORT CDPULSE_KAFKA_CONTROLLER_PORT CDPULSE_REDIS_PORT CDPULSE_RUN_DIR CDPULSE_CACHE_DIR
export CDPULSE_WEB_PORT CDPULSE_WORKER_PORT CDPULSE_LEARNER_PORT
export CDPULSE_KAFKA_BOOTSTRAP=127.0.0.1:$CDPULSE_KAFKA_PORT
export CDPULSE_REDIS_URL=redis://127.0.0.1:$CDPULSE_REDIS_PORT/0
# One broker: one copy of each partition (the defaults, 3 and 2, are for a real cluster).
export CDPULSE_TOPIC_REPLICATION=${CDPULSE_TOPIC_REPLICATION:-1}
export CDPULSE_TOPIC_MIN_INSYNC_REPLICAS=${CDPULSE_TOPIC_MIN_INSYNC_REPLICAS:-1}
export CDPULSE_DATA_DIR=${CDPULSE_DATA_DIR:-$CDPULSE_RUN_DIR/worker}
# Each run gets topics, Redis keys and a consumer group of its own: the stack keeps its data
# between runs, and the same seeded shop fed twice into one namespace would count every event
# twice (duplicates are caught only among a profile's 64 most recent event ids).
DEMO_NAMESPACE=demo-$(date +%Y%m%d-%H%M%S)
export CDPULSE_TOPIC_CLICKSTREAM=${CDPULSE_TOPIC_CLICKSTREAM:-$DEMO_NAMESPACE.clickstream}
export CDPULSE_TOPIC_TRANSACTIONS=${CDPULSE_TOPIC_TRANSACTIONS:-$DEMO_NAMESPACE.transactions}
export CDPULSE_TOPIC_CUSTOMERS=${CDPULSE_TOPIC_CUSTOMERS:-$DEMO_NAMESPACE.customers}
export CDPULSE_TOPIC_DEAD_LETTER=${CDPULSE_TOPIC_DEAD_LETTER:-$DEMO_NAMESPACE.dead-letter}
export CDPULSE_TOPIC_TRAINING=${CDPULSE_TOPIC_TRAINING:-$DEMO_NAMESPACE.training}
export CDPULSE_TOPIC_RECO_EVENTS=${CDPULSE_TOPIC_RECO_EVENTS:-$DEMO_NAMESPACE.reco-events}
export CDPULSE_TOPIC_RECOMMENDATIONS=${CDPULSE_TOPIC_RECOMMENDATIONS:-$DEMO_NAMESPACE.recommendations}
export CDPULSE_TOPIC_SEGMENTS=${CDPULSE_TOPIC_SEGMENTS:-$DEMO_NAMESPACE.segments}
export CDPULSE_SEGMENTS_FILE=${CDPULSE_SEGMENTS_FILE:-$REPO_ROOT/deploy/segments.yaml}
export CDPULSE_TOPIC_AUDIT=${CDPULSE_TOPIC_AUDIT:-$DEMO_NAMESPACE.audit}
export CDPULSE_TOPIC_READ_AUDIT=${CDPULSE_TOPIC_READ_AUDIT:-$DEMO_NAMESPACE.read-audit}
export CDPULSE_TOPIC_TRIGGERS=${CDPULSE_TOPIC_TRIGGERS:-$DEMO_NAMESPACE.triggers}
export CDPULSE_TOPIC_OFFER_REWARDS=${CDPULSE_TOPIC_OFFER_REWARDS:-$DEMO_NAMESPACE.offer-rewards}
export CDPULSE_TOPIC_ERASURES=${CDPULSE_TOPIC_ERASURES:-$DEMO_NAMESPACE.erasures}
export CDPULSE_REDIS_PREFIX=${CDPULSE_REDIS_PREFIX:-$DEMO_NAMESPACE}
# A local demo on 127.0.0.1: a fresh pseudonym key per run, and the HTTP API without tokens
# (README: Privacy and security). Never run a shared deployment like this.
export CDPULSE_PSEUDONYM_KEY=${CDPULSE_PSEUDONYM_KEY:-$(head -c 32 /dev/urandom | base64)}
export CDPULSE_AUTH_DISABLED=${CDPULSE_AUTH_DISABLED:-true}
export CDPULSE_APP_ID=${CDPULSE_APP_ID:-cdpulse-$DEMO_NAMESPACE}

[[ -x $CDPULSE ]] || die "$CDPULSE not found: run 'make venv' first (or 'make demo', which does)"
command -v curl >/dev/null || die "curl not found: apt-get install -y curl"

# The three process roles (README: Architecture), each with its own log.
ROLES=(worker learner api)
declare -A role_pid=() role_port=([worker]=$CDPULSE_WORKER_PORT [learner]=$CDPULSE_LEARNER_PORT [api]=$CDPULSE_WEB_PORT)
producer_pid=""
stack_started=""

cleanup() {
  trap - EXIT INT TERM
  if [[ -n $producer_pid ]]; then kill -TERM "$producer_pid" 2>/dev/null || true; fi
  for role in api learner worker; do
    pid=${role_pid[$role]:-}
    if [[ -n $pid ]]; then
      say "stopping the $role (pid $pid)"
      stop_pid "$pid" "$role"
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ -n $stack_started ]]; then "$HERE/stack.sh" stop; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summarise_profile() {
  python3 -c '
import json, sys
profile = json.load(sys.stdin)
parts = ["%s=%s" % (key, profile.get(key)) for key in ("events", "sessions", "orders", "revenue")]
parts.append("cart=%s" % (profile.get("cart") or {}).get("value", 0))
print(" ".join(parts))
'
}

roles_alive_or_die() {
  for role in "${ROLES[@]}"; do
    if ! alive "${role_pid[$role]}"; then
      role_pid[$role]=""
      log_tail "$CDPULSE_RUN_DIR/$role.log"
      die "the $role exited; see $CDPULSE_RUN_DIR/$role.log"
    fi
  done
}

start_role() {
  local role=$1 url=http://127.0.0.1:${role_port[$1]}/healthz waited=0
  say "starting cdpulse $role, log $CDPULSE_RUN_DIR/$role.log"
  (cd "$REPO_ROOT" && exec "$CDPULSE" "$role" </dev/null >>"$CDPULSE_RUN_DIR/$role.log" 2>&1) &
  role_pid[$role]=$!
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) == 200 ]]; do
    alive "${role_pid[$role]}" || { log_tail "$CDPULSE_RUN_DIR/$role.log"; die "the $role exited; see $CDPULSE_RUN_DIR/$role.log"; }
    ((waited < HEALTH_TIMEOUT * 2)) || { log_tail "$CDPULSE_RUN_DIR/$role.log"; die "$role not healthy at $url after ${HEALTH_TIMEOUT}s"; }
    sleep 0.5
    waited=$((waited + 1))
  done
  say "$role is healthy at $url"
}

declare -A role_variable=([worker]=CDPULSE_WORKER_PORT [learner]=CDPULSE_LEARNER_PORT [api]=CDPULSE_WEB_PORT)
for role in "${ROLES[@]}"; do require_free_port "${role_port[$role]}" "${role_variable[$role]}"; done
if ! "$HERE/stack.sh" status >/dev/null; then stack_started=1; fi
"$HERE/stack.sh" start

mkdir -p "$CDPULSE_DATA_DIR"
for role in "${ROLES[@]}"; do start_role "$role"; done

"$CDPULSE" simulate --customers 2000 --days $((HISTORY_DAYS + LIVE_DAYS)) --seed 7 --out "$EVENTS"
# The simulator writes in event-time order: the history is every line before the first of
# the live days.
python3 -c '
import datetime, json, sys
events, history, live, days = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cut = None
with open(events, encoding="utf-8") as lines, open(history, "w", encoding="utf-8") as old, \
        open(live, "w", encoding="utf-8") as new:
    for line in lines:
        at = datetime.datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
        cut = cut or at.replace(hour=0, minute=0, second=0, microsecond=0) + datetime.timedelta(days=days)
        (old if at < cut else new).write(line)
' "$EVENTS" "$HISTORY" "$LIVE" "$HISTORY_DAYS"
# The first customer who orders: a profile with purchases shows more than one with views only.
customer_id=$(python3 -c '
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    event = json.loads(line)
    if event.get("type") == "order_completed" and event.get("customer_id"):
        print(event["customer_id"])
        break
' "$EVENTS")
[[ -n $customer_id ]] || die "no order_completed event with a customer_id in $EVENTS"
PROFILE_URL=$BASE_URL/v1/profiles/$customer_id

show_urls() {
  say ""
  say "  dashboard:     $BASE_URL/dashboard  (KPIs, funnel, cohorts, segments, churn and value, experiments, uplift, data quality, drift, fairness)"
  say "  live profile:  $PROFILE_URL"
  say "  metrics:       $BASE_URL/metrics (api), http://127.0.0.1:$CDPULSE_WORKER_PORT/metrics (worker), http://127.0.0.1:$CDPULSE_LEARNER_PORT/metrics (learner)"
  say "  segments:      $BASE_URL/v1/segments  (transitions on $CDPULSE_TOPIC_SEGMENTS)"
  say "  experiment:    $BASE_URL/v1/experiments/checkout_button"
  say "  topics:        $CDPULSE_TOPIC_CLICKSTREAM, $CDPULSE_TOPIC_TRANSACTIONS, $CDPULSE_TOPIC_CUSTOMERS"
  say ""
}
# What the models have to show so far, from the worker's and the learner's /metrics.
models_line() {
  "$REPO_ROOT/.venv/bin/python" - "http://127.0.0.1:$CDPULSE_WORKER_PORT/metrics" "http://127.0.0.1:$CDPULSE_LEARNER_PORT/metrics" <<'PY'
import math, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
seen = {}
for url in sys.argv[1:]:
    try:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError:
        continue
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            seen[key] = seen.get(key, 0) + sample.value
def total(name, **labels):
    return sum(v for (n, l), v in seen.items() if n == name and all(dict(l).get(k) == x for k, x in labels.items()))
auc = total("cdpulse_model_roc_auc", model="churn")
print("events applied %d | churn labels %d churned / %d active, AUC %s | lifetime value: %d buyers | "
      "recommendation lists %d | triggers fired %d | segment moves %d" % (
    total("cdpulse_events_applied_total"), total("cdpulse_churn_labels_total", label="1"),
    total("cdpulse_churn_labels_total", label="0"), "unknown yet" if math.isnan(auc) or not auc else "%.3f" % auc,
    total("cdpulse_clv_customers"), total("cdpulse_recommendation_lists_total"),
    total("cdpulse_triggers_total", outcome="fired"), total("cdpulse_segment_transitions_total")))
PY
}

# Each file in the background and waited for, so that a signal reaches the trap at once
# rather than after the whole feed; cleanup stops it.
feed() {
  local file=$1 produced=0
  shift
  "$CDPULSE" produce "$file" "$@" </dev/null &
  producer_pid=$!
  while alive "$producer_pid"; do
    sleep 10 &
    wait $! || true
    alive "$producer_pid" && say "$(date +%T) $(models_line)"
  done
  wait "$producer_pid" || produced=$?
  producer_pid=""
  case $produced in
    0) ;;
    1) say "produce rejected some lines of $file (listed above); the rest went through" ;;
    *) die "cdpulse produce failed on $file (exit $produced)" ;;
  esac
}

show_urls
if [[ -s $HISTORY ]]; then
  say "backfilling $(wc -l <"$HISTORY") events ($HISTORY_DAYS days of history) as fast as the worker takes them"
  feed "$HISTORY"
  say "history sent; $(models_line)"
fi
say "feeding the last $LIVE_DAYS days, $LIVE, at 2000 events/s (refresh the profile to watch it change)"
feed "$LIVE" --rate 2000

show_urls
say "the feed is in; the roles keep serving. Ctrl-C stops them${stack_started:+ and the stack}."
while true; do
  roles_alive_or_die
  say "$(date +%T) $(models_line)"
  if body=$(curl -fsS "$PROFILE_URL" 2>/dev/null); then
    say "$(date +%T) $customer_id: $(summarise_profile <<<"$body")"
  else
    say "$(date +%T) $customer_id: no profile yet"
  fi
  sleep 5
done
