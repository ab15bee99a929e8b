#!/usr/bin/env bash
# Build the RPM packages with CPack: build-pkg/taskq-<version>.<arch>.rpm
# (daemon, bundled plugins, configuration, systemd unit, man pages) and
# build-pkg/taskq-devel-<version>.<arch>.rpm (the plugin SDK).
#
#   packaging/build-rpm.sh            (or: make rpm)
#
# Needs rpmbuild: on Fedora/RHEL `dnf install rpm-build`, on Debian or
# Ubuntu `apt-get install rpm`.  Build on the distribution the package is
# for: the library names in Requires (libmicrohttpd, hiredis, libpq, cjson,
# libconfig, libuuid, libcurl) are those of Fedora/RHEL with EPEL.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${TASKQ_PKG_DIR:-$here/build-pkg}
build=$out/build-rpm

if ! command -v rpmbuild >/dev/null; then
	cat >&2 <<'MSG'
build-rpm: rpmbuild is missing.  Install it first:
  Fedora/RHEL:   dnf install rpm-build
  Debian/Ubuntu: apt-get install rpm
MSG
	exit 1
fi

# Fedora and RHEL keep units in /usr/lib/systemd/system and libraries in
# lib64; the plugins stay in /usr/lib/taskq, where taskqd looks.
cmake -S "$here" -B "$build" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_INSTALL_PREFIX=/usr \
	-DCMAKE_INSTALL_LIBDIR=lib64 \
	-DTASKQ_PLUGIN_INSTALL_DIR=lib/taskq \
	-DTASKQ_CONF_INSTALL_DIR=/etc/taskq \
	-DTASKQ_SYSTEMD_UNIT_DIR=/usr/lib/systemd/system \
	-DTASKQ_TESTS=OFF -DTASKQ_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
(cd "$build" && cpack -G RPM -B "$out" >/dev/null)
rm -rf "$out/_CPack_Packages"

shopt -s nullglob
rpms=("$out"/*.rpm)
if [ ${#rpms[@]} -eq 0 ]; then
	echo "build-rpm: cpack made no package" >&2
	exit 1
fi
for rpm in "${rpms[@]}"; do
	echo "== $rpm"
	rpm -qp --qf '%{NAME} %{VERSION}-%{RELEASE} %{ARCH}\n' "$rpm"
	rpm -qpR "$rpm" | grep -v '^rpmlib(' | sed 's/^/  requires: /'
done
