#!/usr/bin/env bash
# A single-node Kafka 3.9.1 (KRaft, broker and controller in one JVM) on 127.0.0.1, no Docker:
# the jars come from Maven Central (deploy/local/pom.xml) into $CDPULSE_CACHE_DIR.
#
#   kafka.sh fetch    download the jars once (what `make test` needs before pytest starts the broker)
#   kafka.sh start    start the broker unless it runs; returns when it serves requests
#   kafka.sh stop     SIGTERM, then SIGKILL after $CDPULSE_STOP_TIMEOUT (30) seconds
#   kafka.sh status   exit 0 when running, 3 when stopped
#
# Settings: CDPULSE_KAFKA_PORT (9092), CDPULSE_KAFKA_CONTROLLER_PORT (9093), CDPULSE_RUN_DIR,
# CDPULSE_CACHE_DIR, CDPULSE_KAFKA_HEAP ("-Xms256m -Xmx1g"), CDPULSE_KAFKA_START_TIMEOUT (90 s).
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

HOME_DIR=$CDPULSE_RUN_DIR/kafka
PIDFILE=$HOME_DIR/kafka.pid
SERVER_LOG=$HOME_DIR/logs/server.log
STDOUT_LOG=$HOME_DIR/logs/stdout.log
# Two cores on our machines: a small heap leaves room for Redis, the worker and pytest.
KAFKA_HEAP=${CDPULSE_KAFKA_HEAP:-"-Xms256m -Xmx1g"}
START_TIMEOUT=${CDPULSE_KAFKA_START_TIMEOUT:-90}
# The tail of this broker's command line: tells it from any other Kafka on the machine.
MARKER="kafka.Kafka $HOME_DIR/server.properties"

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
node.id=1
controller.quorum.voters=1@127.0.0.1:$CDPULSE_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$CDPULSE_KAFKA_PORT,CONTROLLER://127.0.0.1:$CDPULSE_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$CDPULSE_KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$HOME_DIR/data

# One node: every replication factor and min ISR is 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1

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

# Format the log directory once, with a cluster id kept beside it.
format_storage() {
  local cluster_id_file=$HOME_DIR/cluster.id cluster_id
  [[ -f $HOME_DIR/data/meta.properties ]] && return 0
  if [[ ! -s $cluster_id_file ]]; then
    # 16 random bytes, URL-safe base64 without padding: the form Kafka expects.
    head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$cluster_id_file"
  fi
  cluster_id=$(<"$cluster_id_file")
  "${JAVA[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$HOME_DIR/server.properties" \
    --ignore-formatted >"$HOME_DIR/logs/format.log" 2>&1 \
    || { log_tail "$HOME_DIR/logs/format.log"; die "formatting Kafka storage in $HOME_DIR/data failed"; }
}

listening_on() {
  sed -n 's|^advertised.listeners=PLAINTEXT://||p' "$HOME_DIR/server.properties" 2>/dev/null
}

start() {
  local pid waited=0
  fetch
  if pid=$(live_pid "$PIDFILE" "$MARKER"); then
    say "kafka is already running (pid $pid) on $(listening_on)"
    return 0
  fi
  rm -f "$PIDFILE"
  require_free_port "$CDPULSE_KAFKA_PORT" CDPULSE_KAFKA_PORT
  require_free_port "$CDPULSE_KAFKA_CONTROLLER_PORT" CDPULSE_KAFKA_CONTROLLER_PORT
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

  while ((waited < START_TIMEOUT * 4)); do
    sleep 0.25
    waited=$((waited + 1))
    pid=$(live_pid "$PIDFILE" "$MARKER") || {
      ((waited > 8)) || continue # the pid file may not be written yet
      log_tail "$SERVER_LOG"
      log_tail "$STDOUT_LOG" 10
      die "kafka exited during start-up; see $SERVER_LOG and $STDOUT_LOG"
    }
    if port_open "$CDPULSE_KAFKA_PORT" && grep -qF 'Kafka Server started' "$SERVER_LOG" 2>/dev/null; then
      say "kafka is running (pid $pid) on 127.0.0.1:$CDPULSE_KAFKA_PORT, log $SERVER_LOG"
      return 0
    fi
  done
  log_tail "$SERVER_LOG"
  # Stopped rather than left half-up: a failed start leaves nothing running.
  stop >/dev/null
  die "kafka did not come up within ${START_TIMEOUT}s on 127.0.0.1:$CDPULSE_KAFKA_PORT; raise CDPULSE_KAFKA_START_TIMEOUT on a slow machine"
}

stop() {
  stop_service kafka "$PIDFILE" "$MARKER"
}

status() {
  service_status kafka "$PIDFILE" "$MARKER" "$(listening_on), log $SERVER_LOG"
}

case ${1:-} in
  fetch | start | stop | status) "$1" ;;
  *) die "usage: $0 fetch|start|stop|status" ;;
esac
