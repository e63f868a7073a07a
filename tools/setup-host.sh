#!/usr/bin/env bash
# Prepare this machine for nova-consolelog's demo and tests.
#
#   tools/setup-host.sh [PROFILE ...]     (default profile: test)
#
# Installs the Debian packages bindep.txt lists for the profiles (as root),
# creates .venv with tox and bindep, and starts RabbitMQ for the
# `functional` profile when nothing listens on 127.0.0.1:5672. Safe to run
# again. Profiles: compile, test (unit tests, the demo), functional
# (RabbitMQ), e2e (libvirtd, virtlogd, QEMU).
set -euo pipefail

cd "$(dirname "$0")/.."
profiles=("${@:-test}")
venv=.venv

log() { printf '[setup-host] %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import bindep, tox' 2>/dev/null; then
    log "installing tox and bindep into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'tox>=4' bindep
fi

missing=$("$venv/bin/bindep" -b "${profiles[@]}" || true)
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing Debian packages: $missing"
        log "run this script as root, or: sudo apt-get install $missing"
        exit 1
    fi
    log "installing Debian packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

needs_rabbit=no
for p in "${profiles[@]}"; do
    case "$p" in functional) needs_rabbit=yes ;; esac
done
if [ "$needs_rabbit" = yes ]; then
    tools/ensure-rabbitmq.sh
fi
log "ready"
