#!/usr/bin/env bash
# A Kafka-protocol broker for development and tests: `tansu` on 127.0.0.1:19092 with sqlite
# storage under $KAFKA_DEV_DIR (default ./data/kafka). Idempotent.
#
#   scripts/kafka-dev.sh install   build tansu once into the cache (about 20 min cold)
#   scripts/kafka-dev.sh start     install if needed, start, wait until it listens
#   scripts/kafka-dev.sh stop      stop it (SIGTERM), if running
#   scripts/kafka-dev.sh status    say whether it runs
#
# The build is cached under $SLUICE_CACHE_DIR (default ~/.cache/sluice), which outlives
# checkouts on one machine, so only a new machine pays for it. Facts and pitfalls:
# shared/notes/test-infra.md (memory storage loses data on resume: sqlite only).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=0.6.0
cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/tansu-$version"
tansu="$cache/bin/tansu"
dir="${KAFKA_DEV_DIR:-$repo/data/kafka}"
listen=127.0.0.1:19092
pidfile="$dir/tansu.pid"

install() {
  if [ -x "$tansu" ]; then
    return
  fi
  echo "kafka-dev: building tansu $version into $cache (once per machine)"
  mkdir -p "$cache"
  # The default features give a broker without usable storage: sqlite needs libsql.
  cargo install "tansu@$version" --locked --features dynostore,libsql --root "$cache"
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

listening() {
  (exec 3<>"/dev/tcp/${listen%:*}/${listen#*:}") 2>/dev/null
}

start() {
  install
  if running; then
    echo "kafka-dev: already running (pid $(cat "$pidfile")) on $listen"
    return
  fi
  mkdir -p "$dir"
  # tansu reads ./.env when present: run it where there is none.
  (cd "$dir" && exec "$tansu" broker \
    --listener-url "tcp://$listen" \
    --advertised-listener-url "tcp://$listen" \
    --storage-engine "sqlite://tansu.db" >>"$dir/tansu.log" 2>&1) &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if listening; then
      echo "kafka-dev: listening on $listen (pid $(cat "$pidfile"), data in $dir)"
      return
    fi
    if ! running; then
      echo "kafka-dev: tansu exited; its log:" >&2
      tail -n 20 "$dir/tansu.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "kafka-dev: tansu did not listen on $listen within 10 s; log: $dir/tansu.log" >&2
  exit 1
}

stop() {
  if ! running; then
    echo "kafka-dev: not running"
    rm -f "$pidfile"
    return
  fi
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka-dev: tansu ignored SIGTERM for 10 s; killing it" >&2
    kill -KILL "$pid"
  fi
  rm -f "$pidfile"
  echo "kafka-dev: stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "kafka-dev: running (pid $(cat "$pidfile")) on $listen"; else echo "kafka-dev: not running"; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
