#!/usr/bin/env bash
# Start the broker servers the test suite talks to, on 127.0.0.1 only, if they are not
# already running; install them from Debian's packages when they are missing.
# SQS (moto) and Kafka (librdkafka's mock cluster) are started by the tests themselves.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 120); do up "$port" && return 0; sleep 0.5; done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

apt_updated=0
need() {  # need BINARY PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "$1" ] && return 0
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
    || echo "services: could not install $2" >&2
}

status=0

if ! up 5432; then
  need pg_ctlcluster postgresql
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_port PostgreSQL 5432 || status=1
fi

if ! up 6379; then
  need redis-server redis-server
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port Redis 6379 || status=1
fi

if ! up 5672; then
  need rabbitmq-server rabbitmq-server
  echo "services: starting RabbitMQ"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1
  rabbitmq-server -detached
  wait_port RabbitMQ 5672 || status=1
fi

if ! up 1883; then
  need mosquitto mosquitto
  echo "services: starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_port Mosquitto 1883 || status=1
fi

if ! up 4222; then
  need nats-server nats-server
  echo "services: starting NATS"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port NATS 4222 || status=1
fi

# A database of its own for the suite, so tests never touch another project's data.
if up 5432; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1" >/dev/null 2>&1 \
    || echo "services: PostgreSQL is up but refuses user postgres" >&2
fi

exit $status
