# flowlb_bpf_object(NAME SOURCE <file.bpf.c> [INCLUDES dirs...])
# Compiles an XDP program with clang -O2 -g -target bpf into the build tree
# and adds a target NAME that produces ${CMAKE_CURRENT_BINARY_DIR}/NAME.o.
find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
function(flowlb_bpf_object name)
  cmake_parse_arguments(ARG "" "SOURCE" "INCLUDES;DEPENDS" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name}.o)
  set(inc_flags "")
  foreach(dir ${ARG_INCLUDES})
    list(APPEND inc_flags -I${dir})
  endforeach()
  # Debian puts asm/types.h under the multiarch include directory.
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch
                  OUTPUT_VARIABLE multiarch OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(multiarch)
    list(APPEND inc_flags -I/usr/include/${multiarch})
  endif()
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${BPF_CLANG} -O2 -g -Wall -Wextra -target bpf ${inc_flags}
            -c ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_SOURCE} -o ${out}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_SOURCE} ${ARG_DEPENDS}
    COMMENT "BPF ${ARG_SOURCE}"
    VERBATIM)
  add_custom_target(${name} ALL DEPENDS ${out})
  set_target_properties(${name} PROPERTIES OBJECT_FILE ${out})
endfunction()
