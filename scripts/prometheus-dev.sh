#!/usr/bin/env bash
# Prometheus 2.42 for tests: Debian's `prometheus` package gives `/usr/bin/prometheus` (the
# reference PromQL engine and remote-write receiver the PromQL tests compare Sluice with,
# and a real remote-write client) and `/usr/bin/promtool` (a real query client). Idempotent.
#
#   scripts/prometheus-dev.sh install   install the package unless both binaries are there
#
# The tests start their own Prometheus processes on free ports with their own data
# directories, so no system service may run: the package's own one (port 9090) is kept from
# starting during the install, and stopped and disabled if it runs anyway.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Stops and disables the package's service, whichever init system started it.
stop_service() {
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  if [ -x /etc/init.d/prometheus ]; then
    as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
  fi
}

install() {
  if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
    return
  fi
  echo "prometheus-dev: installing Debian's prometheus package"
  # policy-rc.d exit code 101 = "action forbidden": the postinst then starts no service
  # (where a policy already exists it is left alone; stop_service catches the rest).
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    ours=1
  fi
  local status=0
  {
    as_root apt-get update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus
  } || status=$?
  if [ -n "$ours" ]; then
    as_root rm -f "$policy"
  fi
  if [ "$status" != 0 ]; then
    echo "prometheus-dev: apt-get install prometheus failed ($status)" >&2
    exit "$status"
  fi
  stop_service
  /usr/bin/prometheus --version 2>&1 | head -n 1
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
