# What `cmake --install BUILD [--prefix DIR]` puts where (and so what the Debian package holds), all relative to
# the prefix (default /usr/local; the .deb: /usr):
#   bin/veilfs, bin/veilkey
#   share/man/man1/veilfs.1.gz, veilkey.1.gz               (man/, mdoc; gzip -9n at build time)
#   share/bash-completion/completions/veilfs, veilkey      (completion/*.bash)
#   share/zsh/site-functions/_veilfs, _veilkey             (Debian's /usr: share/zsh/vendor-completions, below)
#   lib/systemd/user/veilfs@.service                       (systemd/veilfs@.service.in, binary path filled in)
# No mount helper: `mount -t fuse.veilfs` runs fuse3's mount.fuse3, which runs `veilfs` from the standard PATH.
include(GNUInstallDirs)

set(VEILFS_BASH_COMPLETION_DIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
  "where the bash completions go (relative to the prefix)")
set(VEILFS_ZSH_COMPLETION_DIR "" CACHE STRING
  "where _veilfs and _veilkey go (relative to the prefix). Empty: share/zsh/vendor-completions when installing \
to /usr on Debian or a derivative (its zsh does not read /usr/share/zsh/site-functions), else share/zsh/site-functions")
set(VEILFS_SYSTEMD_USER_UNIT_DIR "lib/systemd/user" CACHE STRING
  "where the systemd user unit template veilfs@.service goes (relative to the prefix)")

if(TARGET veilfs)
  install(TARGETS veilfs RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
if(TARGET veilkey)
  install(TARGETS veilkey RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# Man pages, compressed as Debian and most distributions ship them (-n: no name or time stamp in the .gz).
find_program(VEILFS_GZIP gzip REQUIRED)
set(veilfs_man_gz)
foreach(page veilfs.1 veilkey.1)
  set(gz ${CMAKE_BINARY_DIR}/man/${page}.gz)
  add_custom_command(OUTPUT ${gz}
    COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/man/${page} ${CMAKE_BINARY_DIR}/man/${page}
    COMMAND ${VEILFS_GZIP} -9nf ${CMAKE_BINARY_DIR}/man/${page}
    DEPENDS ${CMAKE_SOURCE_DIR}/man/${page}
    COMMENT "Compressing man page ${page}" VERBATIM)
  list(APPEND veilfs_man_gz ${gz})
endforeach()
add_custom_target(veilfs_man ALL DEPENDS ${veilfs_man_gz})
install(FILES ${veilfs_man_gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

install(FILES completion/veilfs.bash DESTINATION ${VEILFS_BASH_COMPLETION_DIR} RENAME veilfs)
install(FILES completion/veilkey.bash DESTINATION ${VEILFS_BASH_COMPLETION_DIR} RENAME veilkey)

# The zsh directory and the unit's binary path depend on the prefix of this install, which `--prefix` and CPack
# (/usr) choose after configuring: both are settled when the install runs.
install(CODE "
  set(veilfs_zsh_dir \"${VEILFS_ZSH_COMPLETION_DIR}\")
  if(NOT veilfs_zsh_dir)
    if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\" AND EXISTS /etc/debian_version)
      set(veilfs_zsh_dir share/zsh/vendor-completions)
    else()
      set(veilfs_zsh_dir share/zsh/site-functions)
    endif()
  endif()
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/\${veilfs_zsh_dir}\" TYPE FILE
    FILES \"${CMAKE_SOURCE_DIR}/completion/_veilfs\" \"${CMAKE_SOURCE_DIR}/completion/_veilkey\")

  if(IS_ABSOLUTE \"${CMAKE_INSTALL_BINDIR}\")
    set(VEILFS_BINARY \"${CMAKE_INSTALL_BINDIR}/veilfs\")
  else()
    set(VEILFS_BINARY \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/veilfs\")
  endif()
  configure_file(\"${CMAKE_SOURCE_DIR}/systemd/veilfs@.service.in\" \"${CMAKE_BINARY_DIR}/systemd/veilfs@.service\" @ONLY)
")
install(FILES ${CMAKE_BINARY_DIR}/systemd/veilfs@.service DESTINATION ${VEILFS_SYSTEMD_USER_UNIT_DIR})
