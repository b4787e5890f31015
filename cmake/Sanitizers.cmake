# FLOWLB_SANITIZE=ON builds everything with ASan and UBSan; UB aborts.
if(FLOWLB_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# FLOWLB_FUZZ=ON (clang): every library is instrumented for libFuzzer's
# coverage and checked by ASan/UBSan; the fuzz targets link the fuzzer.
if(FLOWLB_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
endif()
