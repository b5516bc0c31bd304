#!/usr/bin/env bash
# Start/stop a throwaway Label Studio server for the integration tests and benchmark.
#
#   .ci/labelstudio.sh start [--no-wait]   install if needed, start on 127.0.0.1 with a fresh
#                                          data dir, write the env file (and wait for /health)
#   .ci/labelstudio.sh wait                wait until /health answers (after start --no-wait)
#   .ci/labelstudio.sh stop                stop the server started here
#   .ci/labelstudio.sh status              print URL and whether it answers
#
# After start:  . .ci/.labelstudio/env   exports LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY,
# LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (the server's local-files root; tests put images
# below it). The env file is mode 600; the token is random per start and never printed.
#
# Settings (environment):
#   LS_VENV     virtualenv holding label-studio (default .ci/.lsvenv; created with
#               `python3 -m venv` + `pip install label-studio==$LS_VERSION` when missing)
#   LS_VERSION  default 1.23.2
#   LS_HOME     state folder: data/, files/, pid, log, env (default .ci/.labelstudio)
#   LS_PORT     default: a free port
#   LS_START_TIMEOUT  seconds to wait for /health (default 240; a fresh data dir needs ~50 s)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
LS_VERSION="${LS_VERSION:-1.23.2}"
LS_VENV="${LS_VENV:-$here/.lsvenv}"
LS_HOME="${LS_HOME:-$here/.labelstudio}"
LS_START_TIMEOUT="${LS_START_TIMEOUT:-240}"
PY="${PYTHON:-python3}"
envfile="$LS_HOME/env"
pidfile="$LS_HOME/pid"
logfile="$LS_HOME/log"

log() { echo "labelstudio.sh: $*" >&2; }

install() {
  if [ -x "$LS_VENV/bin/label-studio" ] \
     && "$LS_VENV/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('label-studio')!='$LS_VERSION')" 2>/dev/null; then
    return
  fi
  log "installing label-studio==$LS_VERSION into $LS_VENV (takes a few minutes)"
  [ -x "$LS_VENV/bin/python" ] || "$PY" -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install -q --disable-pip-version-check "label-studio==$LS_VERSION" >&2
}

url_from_env() { sed -n 's/^export LABEL_STUDIO_URL=//p' "$envfile" 2>/dev/null | tr -d "'"; }

healthy() { curl -fsS -m 5 "$1/health" >/dev/null 2>&1; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  if running; then
    log "already running (pid $(cat "$pidfile")); stop it first"
    return 0
  fi
  install
  mkdir -p "$LS_HOME"
  chmod 700 "$LS_HOME"
  rm -rf "$LS_HOME/data"
  mkdir -p "$LS_HOME/data" "$LS_HOME/files"
  local port="${LS_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
  local token password
  token="$("$PY" -c 'import secrets; print(secrets.token_hex(20))')"
  password="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(16))')"
  local url="http://127.0.0.1:$port"
  local root
  root="$(cd "$LS_HOME/files" && pwd -P)"
  umask 077
  cat > "$envfile" <<EOF
export LABEL_STUDIO_URL='$url'
export LABEL_STUDIO_API_KEY='$token'
export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT='$root'
EOF
  chmod 600 "$envfile"
  # setsid: the server and its children form one process group that stop can end.
  # Password and token go through the environment (read by label-studio's get_env), not argv (ps).
  LABEL_STUDIO_BASE_DATA_DIR="$LS_HOME/data" \
  LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
  LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$root" \
  LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true \
  LABEL_STUDIO_PASSWORD="$password" LABEL_STUDIO_USER_TOKEN="$token" \
    setsid "$LS_VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$port" \
      --username admin@example.com --enable-legacy-api-token </dev/null >"$logfile" 2>&1 &
  echo $! > "$pidfile"
  log "started pid $(cat "$pidfile") at $url (log $logfile); env file $envfile"
}

wait_healthy() {
  local url
  url="$(url_from_env)"
  [ -n "$url" ] || { log "no env file; run start first"; return 1; }
  local t0=$SECONDS
  until healthy "$url"; do
    if ! running; then
      log "server exited; last log lines:"; tail -20 "$logfile" >&2; return 1
    fi
    if (( SECONDS - t0 > LS_START_TIMEOUT )); then
      log "no /health after ${LS_START_TIMEOUT}s; last log lines:"; tail -20 "$logfile" >&2; return 1
    fi
    sleep 2
  done
  log "ready at $url after $((SECONDS - t0))s"
}

stop() {
  if ! [ -f "$pidfile" ]; then log "not running"; return 0; fi
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "stopped pid $pid"
}

case "${1:-}" in
  start) start; [ "${2:-}" = "--no-wait" ] || wait_healthy ;;
  wait) wait_healthy ;;
  stop) stop ;;
  status)
    url="$(url_from_env)"
    if [ -n "$url" ] && healthy "$url"; then echo "up $url"; else echo "down ${url:-}"; exit 1; fi ;;
  *) echo "usage: $0 start [--no-wait] | wait | stop | status" >&2; exit 2 ;;
esac
