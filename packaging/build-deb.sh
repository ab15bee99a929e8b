#!/usr/bin/env bash
# Build the Debian packages with CPack: build-pkg/taskq_<version>_<arch>.deb
# (daemon, bundled plugins, configuration, systemd unit, man pages) and
# build-pkg/taskq-dev_<version>_<arch>.deb (the plugin SDK).
#
#   packaging/build-deb.sh            (or: make deb)
#
# Needs cmake, a C compiler, the -dev packages of scripts/deps.sh and
# dpkg-deb.  Runs as any user: the package tree is assembled under
# build-pkg/, nothing is installed on this machine.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${TASKQ_PKG_DIR:-$here/build-pkg}
build=$out/build-deb

for tool in cmake cpack dpkg-deb; do
	command -v "$tool" >/dev/null || {
		echo "build-deb: $tool is missing (apt-get install cmake dpkg)" >&2
		exit 1
	}
done

cmake -S "$here" -B "$build" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_INSTALL_PREFIX=/usr \
	-DTASKQ_PLUGIN_INSTALL_DIR=lib/taskq \
	-DTASKQ_CONF_INSTALL_DIR=/etc/taskq \
	-DTASKQ_SYSTEMD_UNIT_DIR=/lib/systemd/system \
	-DTASKQ_TESTS=OFF -DTASKQ_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
(cd "$build" && cpack -G DEB -B "$out" >/dev/null)
rm -rf "$out/_CPack_Packages"

shopt -s nullglob
debs=("$out"/*.deb)
if [ ${#debs[@]} -eq 0 ]; then
	echo "build-deb: cpack made no package" >&2
	exit 1
fi
for deb in "${debs[@]}"; do
	echo "== $deb"
	dpkg-deb -f "$deb" Package Version Architecture Depends
done
