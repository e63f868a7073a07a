#!/usr/bin/env bash
# Start RabbitMQ when nothing listens on 127.0.0.1:5672, and wait until it
# accepts connections. Fails with a message that says what to do.
set -euo pipefail

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if port_open; then
    exit 0
fi
if ! command -v rabbitmq-server >/dev/null; then
    echo "RabbitMQ is not running and not installed:" \
         "apt-get install rabbitmq-server (or tools/setup-host.sh as root)" >&2
    exit 1
fi
echo "[ensure-rabbitmq] starting rabbitmq-server -detached" >&2
rabbitmq-server -detached || true
for _ in $(seq 1 60); do
    if port_open; then
        exit 0
    fi
    sleep 1
done
echo "RabbitMQ did not start listening on 127.0.0.1:5672 within 60 s;" \
     "see /var/log/rabbitmq/" >&2
exit 1
