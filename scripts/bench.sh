#!/usr/bin/env bash
# bench.sh - the TaskQ benchmark (`make bench`, `make bench-quick`); the
# scenarios and the targets are described in docs/PERFORMANCE.md.
#
#   scripts/bench.sh BUILDDIR            the full run (about 10 minutes)
#   scripts/bench.sh BUILDDIR --quick    every scenario with tiny numbers
#   scripts/bench.sh BUILDDIR --profile  one burst under `perf record -g`
#
# It starts the private servers (scripts/servers.sh), creates a fresh
# database taskq_bench, runs pgbench for the floor, then starts taskqd from
# BUILDDIR (thread isolation), runs taskq-bench against it, restarts it with
# process isolation for the isolation scenario, stops it, prints the table
# and writes BUILDDIR/bench-results.json.  Everything stays on 127.0.0.1.
#
# Knobs (environment): BENCH_PORT (28580), BENCH_WORKERS (32),
# BENCH_PREFETCH (64), BENCH_POOL_SIZE (16), BENCH_API_THREADS (2),
# BENCH_CONNECTIONS (32),
# BENCH_MEM_LIMIT_S (180: the longest the 1,000,000-job run may submit),
# BENCH_PROFILE_JOBS (30000).
set -euo pipefail

usage() {
	echo "usage: $0 BUILDDIR [--quick | --profile]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$1" && pwd) || usage
shift
mode=full
for a in "$@"; do
	case $a in
	--quick) mode=quick ;;
	--profile) mode=profile ;;
	*) usage ;;
	esac
done

servers=$top/scripts/servers.sh
run=${TASKQ_RUN_DIR:-$top/.run}
pg_port=${TASKQ_PG_PORT:-15432}
redis_port=${TASKQ_REDIS_PORT:-16379}
pgbin=${TASKQ_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
port=${BENCH_PORT:-28580}
workers=${BENCH_WORKERS:-32}
prefetch=${BENCH_PREFETCH:-64}
pool=${BENCH_POOL_SIZE:-16}
api_threads=${BENCH_API_THREADS:-2}
conns=${BENCH_CONNECTIONS:-32}
mem_limit=${BENCH_MEM_LIMIT_S:-180}
profile_jobs=${BENCH_PROFILE_JOBS:-30000}
db=taskq_bench
prefix=taskq_bench
pg_url=postgresql://taskq@127.0.0.1:$pg_port/$db
admin_url=postgresql://taskq@127.0.0.1:$pg_port/postgres
taskqd=$build/core/taskqd
bench=$build/bench/taskq-bench
work=$build/bench-work
results=$build/bench-results.json
taskqd_pid=
perf_pid=

for f in "$taskqd" "$bench" "$build/plugins/noop.so" "$pgbin/pgbench"; do
	[ -e "$f" ] || { echo "bench: $f is missing (build the tree first)" >&2; exit 1; }
done
if [ "$mode" = profile ] && ! perf stat -e task-clock true >/dev/null 2>&1; then
	echo "bench: perf does not work here" >&2
	exit 1
fi

psql_q() {
	"$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U taskq "$@"
}

log() { echo "bench: $*" >&2; }

stop_taskqd() {
	[ -n "$taskqd_pid" ] || return 0
	kill -TERM "$taskqd_pid" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$taskqd_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$taskqd_pid" 2>/dev/null; then
		log "taskqd did not stop in 30 s; killing it"
		kill -KILL "$taskqd_pid" 2>/dev/null || true
	fi
	wait "$taskqd_pid" 2>/dev/null || true
	taskqd_pid=
}

cleanup() {
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
	fi
	stop_taskqd
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# write_conf ISOLATION FILE [CLAIM_ON_SUBMIT]
write_conf() {
	cat >"$2" <<CONF
# written by scripts/bench.sh
database = { url = "$pg_url"; pool_size = $pool; auto_migrate = true; };
redis = { url = "redis://127.0.0.1:$redis_port/0"; prefix = "$prefix"; };
api = { listen = "127.0.0.1:$port"; threads = $api_threads; };
workers = { count = $workers; prefetch = $prefetch; shutdown_grace_s = 10;
            claim_on_submit = ${3:-true}; };
plugins = { dir = "$build/plugins"; allow_insecure = true; };
log = { level = "warn"; };
plugin = { noop = { isolation = "$1"; }; };
CONF
}

# taskqd runs with only its configuration file: no TASKQ_* of the caller
unset_args=()
for v in $(compgen -e | grep '^TASKQ_' || true); do
	unset_args+=(-u "$v")
done

start_taskqd() {
	local conf=$1

	if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then
		log "port $port is already in use (set BENCH_PORT)"
		exit 1
	fi
	# env execs taskqd: $! is taskqd's pid
	env "${unset_args[@]}" "$taskqd" -c "$conf" >>"$work/taskqd.log" 2>&1 &
	taskqd_pid=$!
	for _ in $(seq 300); do
		if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then
			return 0
		fi
		if ! kill -0 "$taskqd_pid" 2>/dev/null; then
			taskqd_pid=
			log "taskqd exited at start; its log:"
			tail -n 20 "$work/taskqd.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	log "taskqd did not answer /healthz within 30 s"
	exit 1
}

# An empty jobs table, no dispatch keys left over, and no checkpoint owed
# for the WAL of the run before (taskq-bench does the same before each of
# its scenarios).
reset_state() {
	psql_q -d "$db" -c "TRUNCATE jobs" -c "VACUUM ANALYZE jobs" -c "CHECKPOINT" >/dev/null
	redis-cli -h 127.0.0.1 -p "$redis_port" --scan --pattern "$prefix:*" |
		xargs -r redis-cli -h 127.0.0.1 -p "$redis_port" DEL >/dev/null
}

json_str() { printf '%s' "$1" | tr -d '"\\' | tr -s ' '; }

mkdir -p "$work"
: >"$work/taskqd.log"
rm -f "$work"/*.json
log "starting the private servers"
"$servers" start
"$servers" createdb "$db"
pg_pid=$(head -n 1 "$run/pg/postmaster.pid")
redis_pid=$(cat "$run/redis.pid")

write_conf thread "$work/thread.conf"
write_conf process "$work/process.conf"
write_conf thread "$work/redis.conf" false
env "${unset_args[@]}" "$taskqd" -c "$work/thread.conf" migrate >>"$work/taskqd.log" 2>&1 ||
	{ tail -n 20 "$work/taskqd.log" >&2; exit 1; }
# the new database's catalogs, vacuumed now rather than by autovacuum in
# the middle of a scenario (the idle window counts the database's
# transactions)
psql_q -d "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null

common=(--url "http://127.0.0.1:$port" --pg "$pg_url" --pg-admin "$admin_url"
	--dbname "$db" --redis-port "$redis_port" --pg-pid "$pg_pid"
	--redis-pid "$redis_pid" --connections "$conns")

if [ "$mode" = profile ]; then
	start_taskqd "$work/thread.conf"
	# taskqd, the backends of this PostgreSQL (its connections are open
	# by now) and Redis: nothing else that runs on the machine
	pids=$taskqd_pid,$redis_pid,$pg_pid
	for p in $(ps -o pid= --ppid "$pg_pid"); do pids=$pids,$p; done
	log "profiling a burst of $profile_jobs jobs (perf record -g)"
	perf record -g -p "$pids" -o "$work/perf.data" >"$work/perf.log" 2>&1 &
	perf_pid=$!
	sleep 1
	"$bench" "${common[@]}" --taskqd-pid "$taskqd_pid" --jobs "$profile_jobs" \
		--timeout 300 --out "$work/profile.json" burst
	kill -INT "$perf_pid"
	wait "$perf_pid" || true
	perf_pid=
	stop_taskqd
	report() {
		perf report -i "$work/perf.data" --stdio --no-children -g none --percentage relative \
			--percent-limit 0.5 "$@" 2>/dev/null | grep -v -e '^$' -e '^#' || true
	}
	report --sort comm >"$work/perf-comm.txt"
	report --comm taskqd --sort sym >"$work/perf-taskqd.txt"
	report --comm postgres --sort sym >"$work/perf-postgres.txt"
	report --sort comm,dso,sym >"$work/perf-all.txt"
	head -n 40 "$work/perf-comm.txt" "$work/perf-taskqd.txt" "$work/perf-postgres.txt"
	log "reports in $work/perf-*.txt"
	exit 0
fi

if [ "$mode" = quick ]; then
	floor_s=2
	sizes=(--jobs 500 --rate 200 --duration 2 --idle-duration 2 --idle-cost-s 2
		--timeout 60 --quick)
	scen=(burst bulk steady idle idlecost)
else
	floor_s=10
	sizes=(--jobs 100000 --rate 1000 --duration 30 --idle-duration 10
		--idle-cost-s 10 --mem-jobs 1000000 --mem-limit-s "$mem_limit"
		--timeout 300)
	scen=(burst bulk steady idle idlecost memory)
fi

# pgbench_tps LOG CLIENTS SCRIPT: run SCRIPT for floor_s seconds on the
# bench database, print its transactions per second
pgbench_tps() {
	local tps
	"$pgbin/pgbench" -n -M prepared -c "$2" -j $(($2 < 2 ? $2 : 2)) -T "$floor_s" -f "$3" \
		-h 127.0.0.1 -p "$pg_port" -U taskq "$db" >"$1" 2>&1 ||
		{ cat "$1" >&2; return 1; }
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$1")
	[ -n "$tps" ] || { cat "$1" >&2; return 1; }
	echo "$tps"
}

# machine_cpu: the whole machine's CPU ticks so far and the hypervisor's
# share of them (steal), from /proc/stat
machine_cpu() {
	awk '$1 == "cpu" { print $2+$3+$4+$5+$6+$7+$8+$9, $9; exit }' /proc/stat
}

# 8. the floor: the same SQL through pgbench, same server, same clients
log "floor: pgbench, $conns clients, $floor_s s"
cpu0=$(machine_cpu)
floor_tps=$(pgbench_tps "$work/pgbench.log" "$conns" "$top/bench/floor.sql")
cpu1=$(machine_cpu)
floor_stolen=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {
	split(a, x, " "); split(b, y, " ")
	printf "%.1f", (y[1] > x[1] ? 100 * (y[2] - x[2]) / (y[1] - x[1]) : -1) }')
# and its batched ceiling: 100 jobs a statement, a client per CPU
ceil_clients=$(nproc)
log "ceiling: pgbench, 100 jobs a transaction, $ceil_clients clients, $floor_s s"
reset_state
ceil_tps=$(pgbench_tps "$work/pgbench-ceiling.log" "$ceil_clients" "$top/bench/ceiling.sql")
printf '{"floor":{"jobs_per_s":%s,"clients":%d,"seconds":%d,"stolen_pct":%s,"ceiling_jobs_per_s":%s,"ceiling_clients":%d}}\n' \
	"$floor_tps" "$conns" "$floor_s" "$floor_stolen" \
	"$(awk -v t="$ceil_tps" 'BEGIN { printf "%.1f", t * 100 }')" \
	"$ceil_clients" >"$work/floor.json"
reset_state

pg_version=$(psql_q -d "$db" -tAc "SHOW server_version")
fsync=$(psql_q -d "$db" -tAc "SHOW fsync")
sync_commit=$(psql_q -d "$db" -tAc "SHOW synchronous_commit")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem_mib=$(($(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024))
redis_version=$(redis-cli -h 127.0.0.1 -p "$redis_port" INFO server |
	sed -n 's/^redis_version:\([0-9.]*\).*/\1/p')
printf '{"meta":{"mode":"%s","nproc":%d,"mem_mib":%d,"cpu":"%s","postgres":"%s","redis":"%s","fsync":"%s","synchronous_commit":"%s","workers":%d,"prefetch":%d,"pool_size":%d,"api_threads":%d,"connections":%d,"date":"%s"}}\n' \
	"$mode" "$(nproc)" "$mem_mib" "$(json_str "$cpu")" "$(json_str "$pg_version")" \
	"$(json_str "$redis_version")" "$fsync" "$sync_commit" "$workers" "$prefetch" "$pool" \
	"$api_threads" "$conns" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/meta.json"

# 1-5, 7: thread isolation
log "taskqd with isolation = thread: ${scen[*]}"
start_taskqd "$work/thread.conf"
"$bench" "${common[@]}" "${sizes[@]}" --taskqd-pid "$taskqd_pid" \
	--out "$work/thread.json" "${scen[@]}"
stop_taskqd
reset_state

# 6: process isolation
log "taskqd with isolation = process: burst"
start_taskqd "$work/process.conf"
"$bench" "${common[@]}" "${sizes[@]}" --taskqd-pid "$taskqd_pid" --tag process \
	--out "$work/process.json" burst
stop_taskqd
reset_state

# 3, 4 again with every job through Redis: a node that claims the jobs it
# accepts starts them in the insert's transaction (started_at =
# created_at), so these show the latency of the path through Redis, which
# jobs take when a node has no free worker or another node runs them
log "taskqd with claim_on_submit = false: steady idle"
start_taskqd "$work/redis.conf"
"$bench" "${common[@]}" "${sizes[@]}" --taskqd-pid "$taskqd_pid" --tag redis \
	--out "$work/redis.json" steady idle
stop_taskqd

"$bench" report --out "$results" "$work/meta.json" "$work/floor.json" \
	"$work/thread.json" "$work/process.json" "$work/redis.json"
log "results in $results"
