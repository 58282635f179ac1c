# The Debian package: `cpack -G DEB` in a configured and built tree (tests/package/install_test.sh does it from
# build-release) writes veilfs_<version>-<release>_<arch>.deb with everything packaging/install.cmake installs,
# under /usr. Its Depends are what dpkg-shlibdeps finds the binaries linked against (libfuse3, libsodium,
# Boost.Program_options, libstdc++, libc), plus fuse3 for fusermount3 and mount.fuse3.
set(VEILFS_PACKAGE_MAINTAINER "veilfs maintainers <maintainers@users.noreply.b-seed-80e09a04.example>" CACHE STRING
  "Maintainer field of the Debian package")
set(VEILFS_PACKAGE_RELEASE 1 CACHE STRING "Debian revision of the package (the N in 0.1.0-N)")

set(CPACK_PACKAGE_NAME veilfs)
set(CPACK_PACKAGE_VENDOR veilfs)
set(CPACK_PACKAGE_CONTACT "${VEILFS_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "encrypting stacked FUSE filesystem")
# The extended description, as lines of at most 79 characters (CPack indents them for the control file).
string(JOIN "\n" CPACK_PACKAGE_DESCRIPTION
  "veilfs mounts a plaintext view of an ordinary directory, the cipher dir, in"
  "which every file is stored encrypted and authenticated: contents block by"
  "block (AES-256-GCM or XChaCha20-Poly1305, a key per file), names per"
  "directory, symlink targets and extended attributes. Changed, truncated or"
  "zeroed data is detected, and reading it fails rather than return forged data."
  ""
  "veilkey creates volumes and manages their passphrases, key files and recovery"
  "code; veilfs fsck checks a volume without mounting it. Volumes mount from"
  "/etc/fstab (type fuse.veilfs) or with the systemd user unit veilfs@.service.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${VEILFS_PACKAGE_RELEASE})
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${VEILFS_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS fuse3)
# /usr/share/doc/veilfs/copyright and changelog.Debian.gz, in the package only (packaging/deb-docs.cmake.in).
set(CPACK_DEBIAN_PACKAGE_VERSION_FULL "${PROJECT_VERSION}-${VEILFS_PACKAGE_RELEASE}")
string(TIMESTAMP VEILFS_PACKAGE_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)  # honours SOURCE_DATE_EPOCH
configure_file(packaging/changelog.Debian.in ${CMAKE_BINARY_DIR}/packaging/changelog.Debian @ONLY)
configure_file(packaging/deb-docs.cmake.in ${CMAKE_BINARY_DIR}/packaging/deb-docs.cmake @ONLY)
set(CPACK_INSTALL_SCRIPTS ${CMAKE_BINARY_DIR}/packaging/deb-docs.cmake)
# Only what packaging/install.cmake installs; the build tree's own files never go in.
set(CPACK_SOURCE_IGNORE_FILES "/build[^/]*/" "/\\\\.git/")
include(CPack)
