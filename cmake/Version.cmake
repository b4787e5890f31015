# flowlb_version_library(NAME): a static library with common/version.h's
# functions, regenerated at every build so an incremental build never
# carries a stale commit. The commit is -DFLOWLB_GIT_COMMIT=... when given
# (the Dockerfile passes its build argument: the image has no .git), else
# `git rev-parse` at build time ("-dirty" with uncommitted changes), else
# "unknown".
set(FLOWLB_GIT_COMMIT "" CACHE STRING "Commit stamped into the binaries (default: from git)")

function(flowlb_version_library name)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/version_info.cc)
  add_custom_target(${name}_gen
    BYPRODUCTS ${out}
    COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR} -DOUT=${out}
            -DVERSION=${PROJECT_VERSION} -DCOMMIT=${FLOWLB_GIT_COMMIT}
            -P ${PROJECT_SOURCE_DIR}/cmake/gen_version.cmake
    COMMENT "version stamp"
    VERBATIM)
  add_library(${name} STATIC ${out})
  add_dependencies(${name} ${name}_gen)
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
endfunction()
