#!/usr/bin/env bash
# A Redis Cluster of Debian's redis-server on 127.0.0.1: three masters, each with one
# replica, made once with `redis-cli --cluster create` and kept under
# $CDPULSE_RUN_DIR/redis-cluster/<port> (config, nodes.conf, append-only file, log, pid).
# Restarted nodes rejoin by their nodes.conf; the cluster is created only once.
#
#   redis-cluster.sh start    start every node not running, create the cluster on first start;
#                             returns when every slot is served (cluster_state:ok)
#   redis-cluster.sh stop     SIGTERM every node (SIGKILL after $CDPULSE_STOP_TIMEOUT (30) s)
#   redis-cluster.sh status   exit 0 when every node runs, 3 otherwise
#   redis-cluster.sh url      print the CDPULSE_REDIS_URL that points cdpulse at it
#   redis-cluster.sh ports    print the nodes' ports, one a line
#
# Settings: CDPULSE_REDIS_CLUSTER_PORT (first node's port, 7001; node i listens on it + i - 1
# and on that + 10000 for the cluster bus), CDPULSE_REDIS_CLUSTER_MASTERS (3),
# CDPULSE_REDIS_CLUSTER_REPLICAS (1 per master), CDPULSE_REDIS_CLUSTER_NODE_TIMEOUT (5000 ms:
# how long a master may be silent before its replica takes over), CDPULSE_RUN_DIR.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FIRST_PORT=${CDPULSE_REDIS_CLUSTER_PORT:-7001}
MASTERS=${CDPULSE_REDIS_CLUSTER_MASTERS:-3}
REPLICAS=${CDPULSE_REDIS_CLUSTER_REPLICAS:-1}
NODE_TIMEOUT=${CDPULSE_REDIS_CLUSTER_NODE_TIMEOUT:-5000}
START_TIMEOUT=${CDPULSE_REDIS_START_TIMEOUT:-30}
NODES=$((MASTERS * (1 + REPLICAS)))
ROOT=$CDPULSE_RUN_DIR/redis-cluster

ports() {
  local i
  for ((i = 0; i < NODES; i++)); do say $((FIRST_PORT + i)); done
}

# Point the node globals at the node listening on $1.
select_node() {
  PORT=$1
  HOME_DIR=$ROOT/$PORT
  PIDFILE=$HOME_DIR/redis.pid
  LOG=$HOME_DIR/redis.log
  # Redis sets its process title to "redis-server 127.0.0.1:<port> [cluster]".
  MARKER="redis-server 127.0.0.1:$PORT"
}

write_config() {
  mkdir -p "$HOME_DIR"
  # Written on every start, so a changed setting takes effect; nodes.conf and the data stay.
  cat >"$HOME_DIR/redis.conf" <<EOF
# Written by deploy/local/redis-cluster.sh on every start: edit the script, not this file.
bind 127.0.0.1
port $PORT
dir $HOME_DIR
daemonize yes
pidfile $PIDFILE
logfile $LOG
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $NODE_TIMEOUT
# As the single Redis (redis.sh): every write on disk within a second, no RDB snapshots.
appendonly yes
appendfsync everysec
auto-aof-rewrite-min-size 1gb
save ""
EOF
}

cli() {
  redis-cli -h 127.0.0.1 -p "$1" "${@:2}"
}

start_node() {
  local pid waited=0
  select_node "$1"
  if pid=$(live_pid "$PIDFILE" "$MARKER"); then
    return 0
  fi
  rm -f "$PIDFILE"
  require_free_port "$PORT" CDPULSE_REDIS_CLUSTER_PORT
  require_free_port $((PORT + 10000)) CDPULSE_REDIS_CLUSTER_PORT
  write_config
  redis-server "$HOME_DIR/redis.conf" </dev/null >>"$LOG" 2>&1 \
    || { log_tail "$LOG"; die "redis-server on port $PORT did not start; see $LOG"; }
  while ((waited < START_TIMEOUT * 10)); do
    if [[ $(cli "$PORT" ping 2>/dev/null) == PONG ]]; then return 0; fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log_tail "$LOG"
  die "redis-server on port $PORT did not answer PING within ${START_TIMEOUT}s"
}

# True once node $1 says every slot is served.
cluster_ok() {
  [[ $(cli "$1" cluster info 2>/dev/null) == *cluster_state:ok* ]]
}

# True once every replica has its master and has synced with it: a test that kills a
# master right after start must find a replica ready to take over.
replicas_ready() {
  local port replicas=0
  for port in $(ports); do
    case $(cli "$port" info replication 2>/dev/null) in
      *role:slave*master_link_status:up*) replicas=$((replicas + 1)) ;;
    esac
  done
  ((replicas == MASTERS * REPLICAS))
}

start() {
  local port addresses=() waited=0
  "$(dirname "${BASH_SOURCE[0]}")/redis.sh" install
  for port in $(ports); do
    start_node "$port"
    addresses+=("127.0.0.1:$port")
  done
  # A node that knows no other is new: the cluster was never made (or its files were removed).
  if [[ $(cli "$FIRST_PORT" cluster info) == *cluster_known_nodes:1* ]]; then
    cli "$FIRST_PORT" --cluster create "${addresses[@]}" --cluster-replicas "$REPLICAS" \
      --cluster-yes >"$ROOT/create.log" 2>&1 \
      || { log_tail "$ROOT/create.log"; die "redis-cli --cluster create failed; see $ROOT/create.log"; }
  fi
  while ((waited < START_TIMEOUT * 10)); do
    local all=1
    for port in $(ports); do cluster_ok "$port" || all=""; done
    if [[ -n $all ]] && replicas_ready; then
      say "redis cluster is up: $MASTERS masters, $REPLICAS replica(s) each, ports $FIRST_PORT-$((FIRST_PORT + NODES - 1)), run dir $ROOT"
      say "export CDPULSE_REDIS_URL=$(url)"
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  cli "$FIRST_PORT" cluster info >&2 || true
  die "the redis cluster did not serve every slot with every replica in sync within ${START_TIMEOUT}s (logs in $ROOT/*/redis.log)"
}

stop() {
  local port rc=0
  # Every node folder of the run dir, whatever the size it was started with.
  for port in $( (ls "$ROOT" 2>/dev/null || true) | grep -E '^[0-9]+$'); do
    select_node "$port"
    stop_service "redis cluster node $port" "$PIDFILE" "$MARKER" || rc=$?
  done
  return "$rc"
}

status() {
  local port rc=0
  for port in $(ports); do
    select_node "$port"
    service_status "redis cluster node $port" "$PIDFILE" "$MARKER" "127.0.0.1:$port, log $LOG" || rc=3
  done
  return "$rc"
}

url() {
  say "redis+cluster://127.0.0.1:$FIRST_PORT"
}

case ${1:-} in
  start | stop | status | url | ports) "$1" ;;
  *) die "usage: $0 start|stop|status|url|ports" ;;
esac
