#!/usr/bin/env bash
# The test command of the README: sets up this machine, then runs every
# test suite CI runs. Extra arguments replace the list of tox environments.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-host.sh test functional
envs="${*:-pep8,py3,functional}"
exec .venv/bin/tox -e "$envs"
