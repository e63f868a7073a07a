#!/usr/bin/env bash
# The demo command of the README: prepares this machine, then runs
# `nova-consolelog demo` (extra arguments are passed to it).
#
#   tools/demo.sh                      # two hosts in one process, fake://
#   tools/demo.sh --transport-url rabbit://guest:guest@127.0.0.1:5672/
#   tools/demo.sh --keep               # keep the hosts' directories
#
# Exit status is the demo's: 0 only when the destination's console log
# equals the source's byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."

profiles=(test)
for arg in "$@"; do
    case "$arg" in
        *rabbit://*) profiles+=(functional) ;;   # installs and starts RabbitMQ
    esac
done
tools/setup-host.sh "${profiles[@]}"
if ! .venv/bin/python -c 'import nova_consolelog.demo' 2>/dev/null; then
    echo "[demo] installing nova-consolelog into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check -e .
fi
exec .venv/bin/nova-consolelog demo "$@"
