#!/usr/bin/env bash
# Private, throwaway PostgreSQL and Redis servers on loopback for
# `make run` and `make test`, with their data under .run/.
#
#   servers.sh start        start both (reuses running ones)
#   servers.sh stop         stop both
#   servers.sh env          print TASKQ_DATABASE_URL / TASKQ_REDIS_URL
#   servers.sh pg-start | pg-stop [fast|immediate] | redis-start | redis-stop
#   servers.sh createdb NAME   create a database (dropping an old one)
#
# Ports: TASKQ_PG_PORT (15432), TASKQ_REDIS_PORT (16379), below the
# ephemeral port range so that no client socket can hold them.  initdb refuses
# to run as root, so as root the PostgreSQL server runs as "nobody".
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
run=${TASKQ_RUN_DIR:-$top/.run}
pg_port=${TASKQ_PG_PORT:-15432}
redis_port=${TASKQ_REDIS_PORT:-16379}
pgbin=${TASKQ_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
pgdata=$run/pg
pguser=taskq

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u nobody -- "$@"
	else
		"$@"
	fi
}

pg_running() { as_pg "$pgbin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; }

pg_start() {
	mkdir -p "$run"
	if [ ! -f "$pgdata/PG_VERSION" ]; then
		rm -rf "$pgdata"
		mkdir -p "$pgdata"
		[ "$(id -u)" -eq 0 ] && chown nobody: "$pgdata"
		as_pg "$pgbin/initdb" -D "$pgdata" -U "$pguser" --auth=trust \
			-E UTF8 --no-instructions >"$run/initdb.log" 2>&1 ||
			{ cat "$run/initdb.log" >&2; exit 1; }
		cat >>"$pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
logging_collector = off
CONF
	fi
	if ! pg_running; then
		touch "$run/pg.log"
		[ "$(id -u)" -eq 0 ] && chown nobody: "$run/pg.log"
		as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$run/pg.log" -w -t 60 \
			-o "-p $pg_port" start >/dev/null ||
			{ tail -n 20 "$run/pg.log" >&2; exit 1; }
	fi
	for _ in $(seq 100); do
		"$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
		sleep 0.1
	done
	psql_q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='taskq'" |
		grep -q 1 || psql_q -d postgres -c "CREATE DATABASE taskq" >/dev/null
}

pg_stop() {
	pg_running && as_pg "$pgbin/pg_ctl" -D "$pgdata" -m "${1:-fast}" -w stop >/dev/null
	return 0
}

psql_q() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U "$pguser" "$@"; }

redis_cli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }

redis_start() {
	mkdir -p "$run/redis"
	if ! redis_cli ping >/dev/null 2>&1; then
		redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$run/redis" \
			--save '' --appendonly no --daemonize yes \
			--pidfile "$run/redis.pid" --logfile "$run/redis.log" >/dev/null
		for _ in $(seq 100); do
			redis_cli ping >/dev/null 2>&1 && break
			sleep 0.05
		done
		redis_cli ping >/dev/null
	fi
}

redis_stop() {
	redis_cli shutdown nosave >/dev/null 2>&1 || true
	for _ in $(seq 100); do
		redis_cli ping >/dev/null 2>&1 || return 0
		sleep 0.05
	done
}

case "${1:-}" in
start) pg_start; redis_start ;;
stop) pg_stop fast; redis_stop ;;
pg-start) pg_start ;;
pg-stop) pg_stop "${2:-fast}" ;;
redis-start) redis_start ;;
redis-stop) redis_stop ;;
createdb)
	psql_q -d postgres -c "DROP DATABASE IF EXISTS \"$2\" WITH (FORCE)" >/dev/null
	psql_q -d postgres -c "CREATE DATABASE \"$2\"" >/dev/null ;;
env)
	echo "TASKQ_DATABASE_URL=postgresql://$pguser@127.0.0.1:$pg_port/taskq"
	echo "TASKQ_REDIS_URL=redis://127.0.0.1:$redis_port/0" ;;
*) echo "usage: $0 start|stop|env|pg-start|pg-stop [fast|immediate]|redis-start|redis-stop|createdb NAME" >&2; exit 2 ;;
esac
