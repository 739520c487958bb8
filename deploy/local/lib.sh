# shellcheck shell=bash
# Shared by kafka.sh, redis.sh, stack.sh and demo.sh: settings, pid files and ports.
# Sourced, never run. Every service keeps its config, data, log and pid under $RUN_DIR/<name>/.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The one table of the local stack's settings (README documents the same names).
CDPULSE_KAFKA_PORT=${CDPULSE_KAFKA_PORT:-9092}
CDPULSE_KAFKA_CONTROLLER_PORT=${CDPULSE_KAFKA_CONTROLLER_PORT:-9093}
CDPULSE_REDIS_PORT=${CDPULSE_REDIS_PORT:-6379}
CDPULSE_WEB_PORT=${CDPULSE_WEB_PORT:-6066}
CDPULSE_RUN_DIR=${CDPULSE_RUN_DIR:-$REPO_ROOT/.run}
CDPULSE_CACHE_DIR=${CDPULSE_CACHE_DIR:-$REPO_ROOT/.cache}
# Absolute, because the services are started from other working directories.
mkdir -p "$CDPULSE_RUN_DIR" "$CDPULSE_CACHE_DIR"
CDPULSE_RUN_DIR=$(cd "$CDPULSE_RUN_DIR" && pwd)
CDPULSE_CACHE_DIR=$(cd "$CDPULSE_CACHE_DIR" && pwd)

# Seconds a service gets to exit on SIGTERM before SIGKILL.
STOP_TIMEOUT=${CDPULSE_STOP_TIMEOUT:-30}

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The pid in $1 if the file names a live process whose command line contains $2.
# Matching the command line keeps a recycled pid from passing for our service.
live_pid() {
  local pidfile=$1 marker=$2 pid cmdline
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$marker"* ]] || return 1
  printf '%s' "$pid"
}

# True while process $1 exists and is not a zombie waiting for its parent to reap it.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Refuse to start on a port someone else holds, instead of hanging in the readiness wait
# or failing deep inside a log file. $1 port, $2 the variable that sets it.
require_free_port() {
  local port=$1 var=$2 holder=""
  port_open "$port" || return 0
  if command -v ss >/dev/null 2>&1; then
    holder=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    holder=${holder%%$'\n'*}
    if [[ $holder == *users:* ]]; then holder=${holder#*users:}; else holder=""; fi
  fi
  die "port $port is already in use${holder:+ by $holder}; stop that process or choose another port with $var=<port>"
}

# SIGTERM, then SIGKILL after $STOP_TIMEOUT seconds; returns once the process is gone.
stop_pid() {
  local pid=$1 name=$2 waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while alive "$pid"; do
    if ((waited >= STOP_TIMEOUT * 10)); then
      say "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.1; done
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Stop the service whose pid file is $2 (command line containing $3); $1 names it.
stop_service() {
  local name=$1 pidfile=$2 marker=$3 pid
  if pid=$(live_pid "$pidfile" "$marker"); then
    stop_pid "$pid" "$name"
    say "$name stopped (was pid $pid)"
  else
    say "$name is not running"
  fi
  rm -f "$pidfile"
}

# One status line; exit 3 (LSB "not running") when stopped. $4 says where it listens and logs.
service_status() {
  local name=$1 pidfile=$2 marker=$3 where=$4 pid
  if pid=$(live_pid "$pidfile" "$marker"); then
    say "$name: running (pid $pid) on $where"
  else
    say "$name: stopped"
    return 3
  fi
}

# The last lines of a log, for error messages that must show why a service did not come up.
log_tail() {
  local file=$1
  if [[ -s $file ]]; then
    printf -- '--- last lines of %s ---\n' "$file" >&2
    tail -n "${2:-40}" "$file" >&2
    printf -- '---\n' >&2
  else
    printf '(%s is empty or missing)\n' "$file" >&2
  fi
}
