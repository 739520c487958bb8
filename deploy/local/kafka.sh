#!/usr/bin/env bash
# Kafka 3.9.1 (KRaft, broker and controller in one JVM per node) on 127.0.0.1, no Docker:
# the jars come from Maven Central (deploy/local/pom.xml) into $CDPULSE_CACHE_DIR.
# One node by default; CDPULSE_KAFKA_BROKERS=3 (or --brokers 3) runs three, each a broker
# and a voter of the controller quorum, so the cluster outlives the loss of any one.
#
#   kafka.sh fetch    download the jars once (what `make test` needs before pytest starts the broker)
#   kafka.sh start    start the broker(s) unless they run; returns when every one serves requests
#   kafka.sh stop     every node of the run dir: SIGTERM, then SIGKILL after $CDPULSE_STOP_TIMEOUT (30) s
#   kafka.sh status   exit 0 when every node runs, 3 otherwise
#   kafka.sh bootstrap   print the bootstrap list (host:port,...)
#
# Settings: CDPULSE_KAFKA_PORT (9092), CDPULSE_KAFKA_CONTROLLER_PORT (9093), CDPULSE_KAFKA_BROKERS
# (1), CDPULSE_RUN_DIR, CDPULSE_CACHE_DIR, CDPULSE_KAFKA_HEAP ("-Xms256m -Xmx1g"),
# CDPULSE_KAFKA_START_TIMEOUT (90 s). Node i of a cluster listens on CDPULSE_KAFKA_PORT + 2(i-1)
# and CDPULSE_KAFKA_CONTROLLER_PORT + 2(i-1) (9092/9093, 9094/9095, 9096/9097) and keeps its
# config, data, log and pid in $CDPULSE_RUN_DIR/kafka-<i>; a single node in $CDPULSE_RUN_DIR/kafka.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION=3.9.1
POM=$REPO_ROOT/deploy/local/pom.xml
DIST=$CDPULSE_CACHE_DIR/kafka-$KAFKA_VERSION
LIBS=$DIST/libs
# Holds the pom's checksum: a changed pom means other jars, so they are fetched again.
LIBS_STAMP=$DIST/.fetched

BROKERS=${CDPULSE_KAFKA_BROKERS:-1}
# Two cores on our machines: a small heap leaves room for Redis, the worker and pytest.
KAFKA_HEAP=${CDPULSE_KAFKA_HEAP:-"-Xms256m -Xmx1g"}
START_TIMEOUT=${CDPULSE_KAFKA_START_TIMEOUT:-90}

# Point the node globals at node $1 (1..BROKERS): its folder, ports, pid file and logs.
select_node() {
  NODE_ID=$1
  if ((BROKERS == 1)); then HOME_DIR=$CDPULSE_RUN_DIR/kafka; else HOME_DIR=$CDPULSE_RUN_DIR/kafka-$1; fi
  PORT=$((CDPULSE_KAFKA_PORT + 2 * (NODE_ID - 1)))
  CONTROLLER_PORT=$((CDPULSE_KAFKA_CONTROLLER_PORT + 2 * (NODE_ID - 1)))
  PIDFILE=$HOME_DIR/kafka.pid
  SERVER_LOG=$HOME_DIR/logs/server.log
  STDOUT_LOG=$HOME_DIR/logs/stdout.log
  # The tail of this broker's command line: tells it from any other Kafka on the machine.
  MARKER="kafka.Kafka $HOME_DIR/server.properties"
}

# Every node's folder in the run dir, whatever the cluster size it was started with.
node_homes() {
  local home
  for home in "$CDPULSE_RUN_DIR/kafka" "$CDPULSE_RUN_DIR"/kafka-[0-9]*; do
    [[ -d $home ]] && printf '%s\n' "$home"
  done
  return 0
}

voters() {
  local i list=""
  for ((i = 1; i <= BROKERS; i++)); do
    list+="${list:+,}$i@127.0.0.1:$((CDPULSE_KAFKA_CONTROLLER_PORT + 2 * (i - 1)))"
  done
  printf '%s' "$list"
}

bootstrap() {
  local i list=""
  for ((i = 1; i <= BROKERS; i++)); do
    list+="${list:+,}127.0.0.1:$((CDPULSE_KAFKA_PORT + 2 * (i - 1)))"
  done
  printf '%s\n' "$list"
}

fetch() {
  local sum
  sum=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $LIBS_STAMP && $(<"$LIBS_STAMP") == "$sum" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install -y maven) to fetch the Kafka jars"
  say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  # Into a scratch folder first, so an interrupted download never looks complete.
  rm -rf "$LIBS.partial"
  mkdir -p "$DIST"
  # Quiet unless it fails: Maven's own output then says which artifact or host failed.
  mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIBS.partial" \
    >"$DIST/mvn.log" 2>&1 \
    || { log_tail "$DIST/mvn.log"; die "mvn could not fetch the Kafka jars (is Maven Central reachable?)"; }
  rm -rf "$LIBS"
  mv "$LIBS.partial" "$LIBS"
  printf '%s' "$sum" >"$LIBS_STAMP"
}

# The JVM command line shared by the storage tool and the broker, in the array JAVA.
set_java() {
  command -v java >/dev/null || die "java not found: install JDK 17 (apt-get install -y openjdk-17-jdk-headless)"
  # shellcheck disable=SC2206 # KAFKA_HEAP holds several JVM flags on purpose.
  JAVA=(java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j.configuration="file:$HOME_DIR/log4j.properties" -Dkafka.logs.dir="$HOME_DIR/logs"
    -cp "$LIBS/*")
}

write_config() {
  mkdir -p "$HOME_DIR/data" "$HOME_DIR/logs"
  # Written on every start, so a changed port takes effect; the data stays.
  cat >"$HOME_DIR/server.properties" <<EOF
# Written by deploy/local/kafka.sh on every start: edit the script, not this file.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$HOME_DIR/data

# $BROKERS node(s): $REPLICATION copies of the cluster's own topics, $MIN_ISR in sync for a write.
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICATION
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR

# cdpulse creates its topics itself, with the partition count it chose.
auto.create.topics.enable=false
num.partitions=4
# Consumer groups start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# Fewer internal partitions than the default 50: the first consumer group and the first
# transaction come up in a fraction of the time on a laptop.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4

num.network.threads=2
num.io.threads=4
EOF
  cat >"$HOME_DIR/log4j.properties" <<EOF
# Written by deploy/local/kafka.sh: the broker logs to $SERVER_LOG.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$SERVER_LOG
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
# Per-request and per-partition chatter that buries the lines worth reading.
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
EOF
}

# Format the log directory once, with a cluster id kept beside it (node 1's, for every node).
format_storage() {
  local cluster_id_file=$CDPULSE_RUN_DIR/kafka/cluster.id cluster_id
  if ((BROKERS > 1)); then cluster_id_file=$CDPULSE_RUN_DIR/kafka-1/cluster.id; fi
  [[ -f $HOME_DIR/data/meta.properties ]] && return 0
  if [[ ! -s $cluster_id_file ]]; then
    # 16 random bytes, URL-safe base64 without padding: the form Kafka expects. A leading
    # '-' (1 id in 64) would be read by the format tool as an option: it becomes 'A'
    # (the first 6 bits 0, still 16 bytes).
    head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | sed 's/^-/A/' >"$cluster_id_file"
  fi
  cluster_id=$(<"$cluster_id_file")
  "${JAVA[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$HOME_DIR/server.properties" \
    --ignore-formatted >"$HOME_DIR/logs/format.log" 2>&1 \
    || { log_tail "$HOME_DIR/logs/format.log"; die "formatting Kafka storage in $HOME_DIR/data failed"; }
}

listening_on() {
  sed -n 's|^advertised.listeners=PLAINTEXT://||p' "$1/server.properties" 2>/dev/null
}

# Launch node $NODE_ID unless it runs; prints nothing, returns at once (start waits).
launch() {
  if live_pid "$PIDFILE" "$MARKER" >/dev/null; then return 0; fi
  rm -f "$PIDFILE"
  require_free_port "$PORT" CDPULSE_KAFKA_PORT
  require_free_port "$CONTROLLER_PORT" CDPULSE_KAFKA_CONTROLLER_PORT
  set_java
  write_config
  format_storage
  # The readiness check reads this run's log only.
  if [[ -f $SERVER_LOG ]]; then mv "$SERVER_LOG" "$SERVER_LOG.prev"; fi

  # setsid: the broker outlives the shell (and a Ctrl-C in it); the inner bash writes its own
  # pid before exec, so the pid file names the JVM whether or not setsid had to fork.
  # Every stdio is redirected, or a caller capturing our output would wait for the broker to exit.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash.
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
    "${JAVA[@]}" kafka.Kafka "$HOME_DIR/server.properties" </dev/null >>"$STDOUT_LOG" 2>&1 &
}

# True once node $NODE_ID serves requests; dies when it exited ($1: polls so far).
serving() {
  local pid
  pid=$(live_pid "$PIDFILE" "$MARKER") || {
    (($1 > 8)) || return 1 # the pid file may not be written yet
    log_tail "$SERVER_LOG"
    log_tail "$STDOUT_LOG" 10
    stop >/dev/null
    die "kafka node $NODE_ID exited during start-up; see $SERVER_LOG and $STDOUT_LOG"
  }
  # A node that started before this call has its "started" line in the log it kept.
  port_open "$PORT" && grep -qF 'Kafka Server started' "$SERVER_LOG" 2>/dev/null
}

# Every node is launched before any is waited for: a node of a cluster serves only once a
# majority of the controller quorum runs.
start() {
  local node waited=0 up
  fetch
  for ((node = 1; node <= BROKERS; node++)); do
    select_node "$node"
    launch
  done
  while ((waited < START_TIMEOUT * 4)); do
    up=0
    for ((node = 1; node <= BROKERS; node++)); do
      select_node "$node"
      if serving "$waited"; then up=$((up + 1)); fi
    done
    if ((up == BROKERS)); then
      for ((node = 1; node <= BROKERS; node++)); do
        select_node "$node"
        say "kafka node $node is running (pid $(live_pid "$PIDFILE" "$MARKER")) on 127.0.0.1:$PORT, log $SERVER_LOG"
      done
      say "kafka bootstrap: $(bootstrap)"
      return 0
    fi
    sleep 0.25
    waited=$((waited + 1))
  done
  for ((node = 1; node <= BROKERS; node++)); do
    select_node "$node"
    log_tail "$SERVER_LOG" 20
  done
  # Stopped rather than left half-up: a failed start leaves nothing running.
  stop >/dev/null
  die "kafka ($BROKERS node(s)) did not come up within ${START_TIMEOUT}s on $(bootstrap); raise CDPULSE_KAFKA_START_TIMEOUT on a slow machine"
}

# Every node of the run dir, whatever size of cluster started it.
stop() {
  local home name rc=0
  while read -r home; do
    [[ -e $home/kafka.pid ]] || continue
    name=${home##*/}
    stop_service "${name/kafka-/kafka node }" "$home/kafka.pid" "kafka.Kafka $home/server.properties" || rc=$?
  done < <(node_homes)
  return "$rc"
}

status() {
  local node rc=0
  for ((node = 1; node <= BROKERS; node++)); do
    select_node "$node"
    service_status "kafka node $node" "$PIDFILE" "$MARKER" "$(listening_on "$HOME_DIR"), log $SERVER_LOG" || rc=3
  done
  return "$rc"
}

# `--brokers N` anywhere on the command line, the same as CDPULSE_KAFKA_BROKERS=N.
command=""
while (($#)); do
  case $1 in
    --brokers) BROKERS=${2:-}; shift 2 || die "--brokers needs a number" ;;
    *) command=$1; shift ;;
  esac
done
[[ $BROKERS =~ ^[1-9][0-9]*$ ]] || die "CDPULSE_KAFKA_BROKERS (--brokers) must be a number >= 1, got '$BROKERS'"
# What the cluster's own topics get (stack.sh env prints the same for cdpulse's): three
# copies at most, and an acknowledged write on all but one of them.
REPLICATION=$((BROKERS < 3 ? BROKERS : 3))
MIN_ISR=$((REPLICATION > 1 ? REPLICATION - 1 : 1))

case $command in
  fetch | start | stop | status | bootstrap) "$command" ;;
  *) die "usage: $0 [--brokers N] fetch|start|stop|status|bootstrap" ;;
esac
