#!/usr/bin/env bash
# The demo command of the README: sets up this machine, then runs
# `nova-consolelog demo` (extra arguments are passed to it).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-host.sh test
if ! .venv/bin/python -c 'import nova_consolelog' 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -e .
fi
exec .venv/bin/nova-consolelog demo "$@"
