#!/usr/bin/env bash
# The local stack cdpulse runs on: Kafka (kafka.sh) and Redis (redis.sh), one command.
#
#   stack.sh start    start both (each a no-op when already running), then print the exports
#   stack.sh stop     stop both (every Kafka node of the run dir)
#   stack.sh status   exit 0 when both run, 3 otherwise
#   stack.sh env      only the export lines: eval "$(deploy/local/stack.sh env)"
#
# --brokers 3 (or CDPULSE_KAFKA_BROKERS=3) on any of them: three Kafka brokers, each also a
# controller quorum voter (kafka.sh says which ports); the exports then name all three and
# give cdpulse's topics three replicas, two in sync. One broker: one replica.
#
# Two stacks side by side need their own CDPULSE_RUN_DIR and ports, as the tests do:
#   CDPULSE_RUN_DIR=.run/test CDPULSE_KAFKA_PORT=19092 CDPULSE_KAFKA_CONTROLLER_PORT=19093 \
#     CDPULSE_REDIS_PORT=16379 deploy/local/stack.sh start
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HERE=$REPO_ROOT/deploy/local
# The children read the absolute paths lib.sh settled on.
command=""
while (($#)); do
  case $1 in
    --brokers) CDPULSE_KAFKA_BROKERS=${2:-}; shift 2 || die "--brokers needs a number" ;;
    *) command=$1; shift ;;
  esac
done
CDPULSE_KAFKA_BROKERS=${CDPULSE_KAFKA_BROKERS:-1}
export CDPULSE_KAFKA_PORT CDPULSE_KAFKA_CONTROLLER_PORT CDPULSE_KAFKA_BROKERS CDPULSE_REDIS_PORT CDPULSE_RUN_DIR CDPULSE_CACHE_DIR

# What a cdpulse process needs to reach this stack: every role and the CLI read these.
env_lines() {
  local replication=$((CDPULSE_KAFKA_BROKERS < 3 ? CDPULSE_KAFKA_BROKERS : 3))
  say "export CDPULSE_KAFKA_BOOTSTRAP=$("$HERE/kafka.sh" bootstrap)"
  say "export CDPULSE_REDIS_URL=redis://127.0.0.1:$CDPULSE_REDIS_PORT/0"
  say "export CDPULSE_TOPIC_REPLICATION=$replication"
  say "export CDPULSE_TOPIC_MIN_INSYNC_REPLICAS=$((replication > 1 ? replication - 1 : 1))"
}

start() {
  local redis_was_running=""
  if "$HERE/redis.sh" status >/dev/null; then redis_was_running=1; fi
  # Redis first: it is up in a blink, so a taken port or missing package shows at once.
  "$HERE/redis.sh" start
  if ! "$HERE/kafka.sh" start; then
    # Leave nothing behind that this call started: a failed start is a clean failure.
    if [[ -z $redis_was_running ]]; then "$HERE/redis.sh" stop >/dev/null; fi
    exit 1
  fi
  say "stack is up (run dir $CDPULSE_RUN_DIR); point cdpulse at it with:"
  env_lines
}

stop() {
  local rc=0
  "$HERE/kafka.sh" stop || rc=$?
  "$HERE/redis.sh" stop || rc=$?
  return "$rc"
}

status() {
  local rc=0
  "$HERE/kafka.sh" status || rc=3
  "$HERE/redis.sh" status || rc=3
  return "$rc"
}

case $command in
  start | stop | status) "$command" ;;
  env) env_lines ;;
  *) die "usage: $0 [--brokers N] start|stop|status|env" ;;
esac
