#!/usr/bin/env bash
# Install Outpost from its wheel as a system service (run as root, on a worker or server machine):
#   sudo ./install.sh outpost-0.1.0-py3-none-any.whl
# puts the wheel in a venv at /opt/outpost, the systemd units in /etc/systemd/system, the
# environment files (kept if present) in /etc/outpost, and the README where the units'
# Documentation= points. DESTDIR=/some/root installs under another root (the tests do).
# Options: --units-only (no venv), PIP_ARGS="--no-index --find-links DIR" for an offline install.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
units_only=0
wheel=
for arg in "$@"; do
  case "$arg" in
    --units-only) units_only=1 ;;
    *) wheel=$arg ;;
  esac
done
root=${DESTDIR:-}
prefix=/opt/outpost
PYTHON=${PYTHON:-python3}

if [ "$units_only" -eq 0 ]; then
  if [ -z "$wheel" ] || [ ! -f "$wheel" ]; then
    echo "usage: $0 outpost-VERSION-py3-none-any.whl   (build it with 'make wheel' in a clone)" >&2
    exit 2
  fi
  "$PYTHON" -m venv "$root$prefix"
  # shellcheck disable=SC2086 # PIP_ARGS is a list of options
  "$root$prefix/bin/python" -m pip install --quiet ${PIP_ARGS:-} "$wheel"
fi

install -d -m 0755 "$root/etc/systemd/system" "$root$prefix/share/doc/outpost"
install -m 0644 "$here/systemd/outpost-worker.service" "$here/systemd/outpost-server.service" "$root/etc/systemd/system/"
install -d -m 0700 "$root/etc/outpost"
for env in worker.env server.env; do
  [ -e "$root/etc/outpost/$env" ] || install -m 0600 "$here/systemd/$env" "$root/etc/outpost/$env"
done
# The unprivileged user a root agent runs jobs as (without RunAs), so runbooks cannot read the
# worker's credential; only on the real system (not under DESTDIR).
if [ -z "$root" ] && [ "$(id -u)" -eq 0 ] && ! id outpost-runbook >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin outpost-runbook
  echo "created the outpost-runbook user: jobs without RunAs run as it"
fi
readme="$here/README.md"
[ -f "$readme" ] || readme="$here/../README.md"
install -m 0644 "$readme" "$root$prefix/share/doc/outpost/README.md"
echo "installed: $prefix/bin/outpost, /etc/systemd/system/outpost-{worker,server}.service, /etc/outpost/*.env"
[ -n "$root" ] || echo "next: systemctl daemon-reload; see $prefix/share/doc/outpost/README.md (Installing a worker)"
