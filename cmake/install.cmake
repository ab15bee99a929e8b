# install.cmake - install rules for what is not a build target (the
# configuration file, the systemd unit, man pages, documentation, the
# plugin template) and the CPack set-up of the Debian and RPM packages.
# Included once from the top-level CMakeLists.txt.
#
# A plain `cmake --install BUILD --prefix DIR` puts everything under DIR
# and needs no root: DIR/etc/taskq/taskq.conf, DIR/lib/systemd/system.
# The package scripts (packaging/build-*.sh) configure with absolute
# directories instead:
#   -DCMAKE_INSTALL_PREFIX=/usr -DTASKQ_PLUGIN_INSTALL_DIR=lib/taskq
#   -DTASKQ_CONF_INSTALL_DIR=/etc/taskq
#   -DTASKQ_SYSTEMD_UNIT_DIR=/lib/systemd/system   (RPM: /usr/lib/systemd/system)
#
# Components: "Unspecified" is the daemon, its plugins and its files (the
# taskq package; core/ and plugins/ install without naming a component),
# "dev" is the plugin SDK (taskq-dev / taskq-devel).

set(TASKQ_CONF_INSTALL_DIR "${CMAKE_INSTALL_SYSCONFDIR}/taskq" CACHE STRING
    "Where taskq.conf is installed (absolute for packages: /etc/taskq)")
set(TASKQ_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where taskqd.service is installed (absolute for packages)")
set(TASKQ_PACKAGE_MAINTAINER "TaskQ maintainers <taskq@localhost>" CACHE STRING
    "Maintainer field of the packages")

set(TASKQ_DAEMON_COMPONENT Unspecified)

install(FILES "${PROJECT_SOURCE_DIR}/etc/taskq.conf"
        DESTINATION "${TASKQ_CONF_INSTALL_DIR}"
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
        COMPONENT ${TASKQ_DAEMON_COMPONENT})
install(FILES "${PROJECT_SOURCE_DIR}/etc/taskqd.service"
        DESTINATION "${TASKQ_SYSTEMD_UNIT_DIR}"
        COMPONENT ${TASKQ_DAEMON_COMPONENT})
install(FILES "${PROJECT_SOURCE_DIR}/docs/man/taskqd.8"
        DESTINATION "${CMAKE_INSTALL_MANDIR}/man8"
        COMPONENT ${TASKQ_DAEMON_COMPONENT})
install(FILES "${PROJECT_SOURCE_DIR}/docs/man/taskq.conf.5"
        DESTINATION "${CMAKE_INSTALL_MANDIR}/man5"
        COMPONENT ${TASKQ_DAEMON_COMPONENT})
# The plugin directory exists even when every bundled plugin is removed.
install(DIRECTORY DESTINATION "${TASKQ_PLUGIN_INSTALL_DIR}"
        COMPONENT ${TASKQ_DAEMON_COMPONENT})

file(GLOB TASKQ_USER_DOCS CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/docs/*.md")
install(FILES "${PROJECT_SOURCE_DIR}/README.md" ${TASKQ_USER_DOCS}
        DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/taskq"
        COMPONENT ${TASKQ_DAEMON_COMPONENT})

# The plugin template, for `cp -r` into a new project.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/sdk/examples/template"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/taskq-dev/examples"
        COMPONENT dev
        PATTERN "build" EXCLUDE PATTERN "*.so" EXCLUDE)
install(FILES "${PROJECT_SOURCE_DIR}/docs/PLUGINS.md"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/taskq-dev"
        COMPONENT dev)

# ---- CPack: DEB and RPM, one package per component ----

set(TASKQ_PACKAGING_DIR "${PROJECT_SOURCE_DIR}/packaging")

set(CPACK_PACKAGE_NAME taskq)
set(CPACK_PACKAGE_VENDOR "TaskQ")
set(CPACK_PACKAGE_CONTACT "${TASKQ_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
# Debian puts this summary on the first line of every component's
# description; the rest is the component's own.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "TaskQ, a durable job queue with C plugins")
set(TASKQ_DAEMON_DESCRIPTION
  "The taskqd daemon stores every submitted job in PostgreSQL before it
answers, dispatches it through Redis to a pool of workers, runs it with
the handler of a .so plugin, retries failures with exponential backoff and
records exactly one outcome.  With the bundled plugins, the configuration
file and the systemd unit.")
set(CPACK_PACKAGE_DESCRIPTION "${TASKQ_DAEMON_DESCRIPTION}")
set(CPACK_RESOURCE_FILE_README "${PROJECT_SOURCE_DIR}/README.md")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
# Absolute destinations (/etc/taskq, /lib/systemd/system) go into the
# package tree, not onto the build machine.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)

set(CPACK_COMPONENTS_ALL ${TASKQ_DAEMON_COMPONENT} dev)
set(CPACK_COMPONENT_UNSPECIFIED_DISPLAY_NAME "TaskQ daemon")
set(CPACK_COMPONENT_DEV_DISPLAY_NAME "TaskQ plugin SDK")
set(CPACK_COMPONENT_UNSPECIFIED_DESCRIPTION "${TASKQ_DAEMON_DESCRIPTION}")
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "The plugin SDK: the header, the pkg-config file (taskq-plugin) and the
CMake package (TaskQPlugin) to build job-handler plugins, with a template
plugin to start from.")

# Debian
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_NAME taskq)
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_DEPENDS
  "libmicrohttpd12, libhiredis0.14, libpq5, libcjson1, libconfig9, libuuid1, libcurl4, passwd")
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_SUGGESTS "postgresql, redis-server, taskq-dev")
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_CONTROL_EXTRA
  "${TASKQ_PACKAGING_DIR}/debian/conffiles"
  "${TASKQ_PACKAGING_DIR}/debian/postinst"
  "${TASKQ_PACKAGING_DIR}/debian/prerm"
  "${TASKQ_PACKAGING_DIR}/debian/postrm")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME taskq-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "pkg-config | pkgconf")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "taskq, cmake")

# RPM
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_LICENSE "MIT")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
set(CPACK_RPM_UNSPECIFIED_PACKAGE_NAME taskq)
set(CPACK_RPM_UNSPECIFIED_PACKAGE_REQUIRES
  "libmicrohttpd, hiredis, libpq, cjson, libconfig, libuuid, libcurl, shadow-utils")
set(CPACK_RPM_UNSPECIFIED_POST_INSTALL_SCRIPT_FILE "${TASKQ_PACKAGING_DIR}/rpm/post")
set(CPACK_RPM_UNSPECIFIED_PRE_UNINSTALL_SCRIPT_FILE "${TASKQ_PACKAGING_DIR}/rpm/preun")
set(CPACK_RPM_UNSPECIFIED_USER_FILELIST
  "%config(noreplace) ${TASKQ_CONF_INSTALL_DIR}/taskq.conf")
set(CPACK_RPM_DEV_PACKAGE_NAME taskq-devel)
set(CPACK_RPM_DEV_PACKAGE_REQUIRES "pkgconfig")
# Directories the distribution's filesystem packages own.
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
  /etc /lib /lib/systemd /lib/systemd/system /usr/lib/systemd /usr/lib/systemd/system
  /usr/sbin /usr/include /usr/lib64
  /usr/share/man /usr/share/man/man5 /usr/share/man/man8 /usr/share/doc
  /usr/lib64/cmake /usr/lib64/pkgconfig /usr/lib/cmake /usr/lib/pkgconfig)

include(CPack)
