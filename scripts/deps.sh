#!/usr/bin/env bash
# Install the Debian packages TaskQ needs to build, test and run.
# As root: installs what is missing.  Otherwise: prints the apt-get line.
set -euo pipefail

pkgs=(
	build-essential cmake pkg-config
	libmicrohttpd-dev libhiredis-dev libpq-dev libcjson-dev libconfig-dev
	uuid-dev libcurl4-openssl-dev libcmocka-dev libhttp-parser-dev
	postgresql-15 redis-server curl procps
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "taskq: missing Debian packages; install them with:" >&2
	echo "  sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "taskq: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
