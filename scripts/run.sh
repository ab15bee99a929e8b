#!/usr/bin/env bash
# `make run`: taskqd in the foreground with the bundled plugins, on the
# private servers of scripts/servers.sh (started when needed), or on the
# servers TASKQ_DATABASE_URL / TASKQ_REDIS_URL name.
#
#   scripts/run.sh BUILDDIR CONF
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$1
conf=$2
servers=$top/scripts/servers.sh

if [ -z "${TASKQ_DATABASE_URL:-}" ] || [ -z "${TASKQ_REDIS_URL:-}" ]; then
	"$servers" start
fi
private_env=$("$servers" env)
export TASKQ_DATABASE_URL=${TASKQ_DATABASE_URL:-$(sed -n 's/^TASKQ_DATABASE_URL=//p' <<<"$private_env")}
export TASKQ_REDIS_URL=${TASKQ_REDIS_URL:-$(sed -n 's/^TASKQ_REDIS_URL=//p' <<<"$private_env")}
export TASKQ_PLUGIN_DIR=${TASKQ_PLUGIN_DIR:-$build/plugins}
export TASKQ_LISTEN=${TASKQ_LISTEN:-127.0.0.1:8080}

"$build/core/taskqd" -c "$conf" migrate >/dev/null
cat <<MSG
taskqd: http://$TASKQ_LISTEN  (database $TASKQ_DATABASE_URL, redis $TASKQ_REDIS_URL)
  Ctrl-C stops taskqd; 'make stop' stops the private servers.  Try:
  curl -s -XPOST $TASKQ_LISTEN/v1/jobs -H 'Content-Type: application/json' -d '{"type":"echo","payload":{"x":1}}'
  curl -s $TASKQ_LISTEN/v1/jobs/<id from the answer>
MSG
exec "$build/core/taskqd" -c "$conf"
