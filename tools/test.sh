#!/usr/bin/env bash
# The test command of the README (and of CI, through .ci/run).
#
#   tools/test.sh [TOXENV[,TOXENV...]]
#
# Sets up this machine (Debian packages from bindep.txt, .venv with tox,
# RabbitMQ started if it is not running), runs the tox environments (by
# default every suite: style, unit, functional on RabbitMQ, end-to-end on
# real libvirtd + QEMU, nova's own functional harness, nova's services on
# real libvirtd + QEMU, docs and release notes built with warnings as
# errors), then prints one
# closing line "N passed, N failed, N skipped" summed over every suite.
set -uo pipefail
cd "$(dirname "$0")/.."

default_envs=pep8,py3,functional,e2e,nova-functional,nova-e2e,docs,releasenotes
envs="${1:-$default_envs}"

profiles=(test functional)
case ",$envs," in *,e2e,*|*,nova-e2e,*) profiles+=(e2e) ;; esac
tools/setup-host.sh "${profiles[@]}" || exit 1

log=$(mktemp /tmp/nova-consolelog-test.XXXXXX)
trap 'rm -f "$log"' EXIT
.venv/bin/tox -e "$envs" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# stestr prints " - Passed: N", " - Failed: N", " - Skipped: N" per suite.
sum() { grep -E "^ - $1: [0-9]+" "$log" | awk '{s += $NF} END {print s + 0}'; }
passed=$(sum Passed)
failed=$(sum Failed)
skipped=$(sum Skipped)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    # A suite that failed before running tests (set-up, style) counts once.
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    # The end of a long log is what a CI page shows: repeat the failed
    # tests and their tracebacks (not their captured logs) here.
    echo
    echo "failed tests:"
    grep -E '\.\.\. FAILED$' "$log" || true
    awk '/^Captured traceback:$/ {n = 80; print; next}
         /^Captured / {n = 0}
         n > 0 {print; n--}' "$log"
fi
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
