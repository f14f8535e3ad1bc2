#!/usr/bin/env bash
# Installs the Debian packages of the servers the tests and benchmarks compare Sluice with,
# each only when its binary is missing (idempotent):
#
#   scripts/install-peers.sh influxdb victoria-metrics prometheus
#
# influxdb gives `influxd` (InfluxDB 1.6.7), victoria-metrics gives `victoria-metrics`
# (1.79.5), prometheus gives `prometheus` and `promtool` (2.42: the PromQL reference of the
# tests, and real clients). Tests and benches start their own servers on free loopback
# ports with temp data directories, so the packages' own services must not run (they would
# hold ports and take CPU from the measurements): they are kept from starting during the
# install, and stopped and disabled if they run anyway.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

binary_of() {
  case "$1" in
    influxdb) echo influxd ;;
    victoria-metrics) echo victoria-metrics ;;
    prometheus) echo prometheus ;;
    *) echo "install-peers: unknown package $1" >&2; exit 2 ;;
  esac
}

# Stops and disables a package's service, whichever init system started it.
stop_service() {
  local service=$1
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now "$service.service" >/dev/null 2>&1 || true
  fi
  if [ -x "/etc/init.d/$service" ]; then
    as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
  fi
}

missing=()
for package in "$@"; do
  command -v "$(binary_of "$package")" >/dev/null 2>&1 || missing+=("$package")
done
[ "${#missing[@]}" = 0 ] && exit 0

echo "install-peers: installing ${missing[*]} (Debian packages)"
# policy-rc.d exit code 101 = "action forbidden": the postinst scripts then start no
# service (where a policy already exists it is left alone; stop_service catches the rest).
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
  as_root chmod 755 "$policy"
  ours=1
fi
status=0
{
  as_root apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"
} || status=$?
if [ -n "$ours" ]; then
  as_root rm -f "$policy"
fi
if [ "$status" != 0 ]; then
  echo "install-peers: apt-get install ${missing[*]} failed ($status)" >&2
  exit "$status"
fi
for package in "${missing[@]}"; do
  stop_service "$package"
done
