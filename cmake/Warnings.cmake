# flowlb_warnings(target): warnings on for our own code. Generated code
# (protobuf, gRPC) is built without them; see proto/CMakeLists.txt.
function(flowlb_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                                           -Wnon-virtual-dtor -Wno-missing-field-initializers)
  if(FLOWLB_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
option(FLOWLB_WERROR "Treat warnings in flowlb code as errors" OFF)
