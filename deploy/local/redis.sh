#!/usr/bin/env bash
# A Redis 7 (Debian's redis-server) on 127.0.0.1 with its own port, data and log under
# $CDPULSE_RUN_DIR/redis, append-only file on: profiles survive a restart of the stack.
#
#   redis.sh install  apt-get install redis-server when it is missing
#   redis.sh start    start unless it runs; returns when it answers PING
#   redis.sh stop     SIGTERM (Redis saves and exits), SIGKILL after $CDPULSE_STOP_TIMEOUT (30) s
#   redis.sh status   exit 0 when running, 3 when stopped
#
# Settings: CDPULSE_REDIS_PORT (6379), CDPULSE_RUN_DIR, CDPULSE_REDIS_START_TIMEOUT (30 s).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOME_DIR=$CDPULSE_RUN_DIR/redis
PIDFILE=$HOME_DIR/redis.pid
LOG=$HOME_DIR/redis.log
START_TIMEOUT=${CDPULSE_REDIS_START_TIMEOUT:-30}
# Redis sets its process title to "redis-server 127.0.0.1:<port>".
MARKER=redis-server

install() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  ((EUID == 0)) || die "redis-server is missing; install it with: sudo apt-get install -y redis-server"
  command -v apt-get >/dev/null || die "redis-server is missing and there is no apt-get; install Redis 7 by hand"
  say "installing redis-server with apt-get"
  # Debian starts the packaged service on 6379 after install unless policy-rc.d forbids it;
  # that service would hold the port our own Redis wants. Forbid it for this install only.
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } \
    >"${TMPDIR:-/tmp}/cdpulse-apt.log" 2>&1 || rc=$?
  if [[ -n $added_policy ]]; then rm -f "$policy"; fi
  if ((rc != 0)); then
    log_tail "${TMPDIR:-/tmp}/cdpulse-apt.log" 20
    die "apt-get install redis-server failed"
  fi
}

write_config() {
  mkdir -p "$HOME_DIR/data"
  # Written on every start, so a changed port takes effect; the data stays.
  cat >"$HOME_DIR/redis.conf" <<EOF
# Written by deploy/local/redis.sh on every start: edit the script, not this file.
bind 127.0.0.1
port $CDPULSE_REDIS_PORT
dir $HOME_DIR/data
daemonize yes
pidfile $PIDFILE
logfile $LOG
# Every write reaches the disk within a second: a killed stack loses at most that much.
appendonly yes
appendfsync everysec
# Every profile save appends the whole profile, so the file doubles in seconds under
# load: with the default 64 MB floor Redis forked a rewrite every 5-8 s during the
# bench, a child competing with the worker for this machine's two cores. Rewritten
# only past 1 GB; the append-only file is the persistence, so no RDB snapshots either.
auto-aof-rewrite-min-size 1gb
save ""
EOF
}

listening_on() {
  sed -n 's/^port /127.0.0.1:/p' "$HOME_DIR/redis.conf" 2>/dev/null
}

ping() {
  [[ $(redis-cli -h 127.0.0.1 -p "$CDPULSE_REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

start() {
  local pid waited=0
  install
  if pid=$(live_pid "$PIDFILE" "$MARKER"); then
    say "redis is already running (pid $pid) on $(listening_on)"
    return 0
  fi
  rm -f "$PIDFILE"
  require_free_port "$CDPULSE_REDIS_PORT" CDPULSE_REDIS_PORT
  write_config
  # redis-server daemonizes itself (own session, pid file); the parent returns at once.
  # Every stdio is redirected, or a caller capturing our output would wait for Redis to exit.
  redis-server "$HOME_DIR/redis.conf" </dev/null >>"$LOG" 2>&1 \
    || { log_tail "$LOG"; die "redis-server did not start; see $LOG"; }

  while ((waited < START_TIMEOUT * 10)); do
    sleep 0.1
    waited=$((waited + 1))
    pid=$(live_pid "$PIDFILE" "$MARKER") || {
      ((waited > 20)) || continue # the daemon writes its pid file once it listens
      log_tail "$LOG"
      die "redis exited during start-up; see $LOG"
    }
    if ping; then
      say "redis is running (pid $pid) on 127.0.0.1:$CDPULSE_REDIS_PORT, log $LOG"
      return 0
    fi
  done
  log_tail "$LOG"
  stop >/dev/null
  die "redis did not answer PING on 127.0.0.1:$CDPULSE_REDIS_PORT within ${START_TIMEOUT}s"
}

stop() {
  stop_service redis "$PIDFILE" "$MARKER"
}

status() {
  service_status redis "$PIDFILE" "$MARKER" "$(listening_on), log $LOG"
}

case ${1:-} in
  install | start | stop | status) "$1" ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
