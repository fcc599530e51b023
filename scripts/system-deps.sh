#!/usr/bin/env bash
# Debian packages the tests use for real: Prometheus + promtool, Alertmanager, tinyproxy, gpg,
# systemd-analyze (verifies the shipped units).
# Installs what is missing when run as root; otherwise says what to install.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
{ command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1; } \
  || need+=(prometheus-alertmanager)
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || need+=(tinyproxy)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The packages start system services we do not want: tests start their own on loopback.
  for svc in prometheus prometheus-alertmanager tinyproxy; do
    (service "$svc" stop || true) >/dev/null 2>&1
  done
else
  echo "missing Debian packages for the tests: ${need[*]} (sudo apt-get install ${need[*]})" >&2
  exit 1
fi
