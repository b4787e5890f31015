#!/usr/bin/env bash
# flowlb's one entry point. Every command installs what it needs first.
#   ./flowlb.sh demo    the main job on an embedded default
#   ./flowlb.sh test    every test: format, unit + e2e, unit under ASan+UBSan, a bounded fuzz run
#   ./flowlb.sh build   dependencies + release build into build/
#   ./flowlb.sh bench core   benchmarks (see bench/run.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
jobs=${FLOWLB_JOBS:-2}

deps() { "$root/scripts/install-deps.sh"; }

configure_build() {  # configure_build DIR [cmake args...]; then builds targets in $TARGETS
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S "$root" -B "$dir" -G Ninja "$@" >"$dir.configure.log" 2>&1 || {
      cat "$dir.configure.log"
      exit 1
    }
  fi
  ninja -C "$dir" -j"$jobs" ${TARGETS:-}
}

build() {
  deps
  mkdir -p "$root/build"
  configure_build "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLOWLB_WERROR=ON
}

demo() {
  build
  echo
  echo "== flowlb demo: controller, two LB nodes and backends in network namespaces, real traffic =="
  (cd "$root" && python3 -m e2e.lab.demo "$root/build")
}

summary=()
run_ctest() {  # run_ctest NAME DIR ARGS...: runs ctest, records its counts
  local name=$1 dir=$2
  shift 2
  local log
  log=$(mktemp)
  set +e
  ctest --test-dir "$dir" --output-on-failure "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  local line total failed
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$log" | tail -1)
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  failed=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  rm -f "$log"
  summary+=("$name ${total:-0} ${failed:-0}")
  [ -n "$line" ] && [ "$rc" -eq 0 ] || return 1
}

test_all() {
  local rc=0
  build
  echo "== format (clang-format --dry-run -Werror on every tracked C/C++ file) =="
  if "$root/scripts/check-format.sh"; then
    summary+=("format 1 0")
  else
    summary+=("format 1 1")
    rc=1
  fi
  run_ctest "unit+e2e" "$root/build" -L "unit|e2e" -j"$jobs" || rc=1

  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer =="
  mkdir -p "$root/build-asan"
  TARGETS="agent_core_test agent_metrics_test common_test controller_test sync_link_test identity_test" configure_build "$root/build-asan" \
    -DCMAKE_BUILD_TYPE=Debug -DFLOWLB_SANITIZE=ON -DFLOWLB_BENCH=OFF -DFLOWLB_WERROR=ON
  ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$root/scripts/lsan.supp" \
    UBSAN_OPTIONS=print_stacktrace=1 \
    run_ctest "unit(asan+ubsan)" "$root/build-asan" -L unit -j"$jobs" || rc=1

  echo "== bounded fuzz run (libFuzzer, ASan+UBSan) =="
  mkdir -p "$root/build-fuzz"
  CC=clang CXX=clang++ TARGETS="forwarder_fuzz conntrack_adopt_fuzz bgp_fuzz" configure_build "$root/build-fuzz" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLOWLB_FUZZ=ON -DFLOWLB_BENCH=OFF \
    -DFLOWLB_FUZZ_SECONDS="${FLOWLB_FUZZ_SECONDS:-45}"
  run_ctest "fuzz" "$root/build-fuzz" -L fuzz || rc=1

  local passed=0 failed=0
  for s in "${summary[@]}"; do
    read -r name total bad <<<"$s"
    echo "  $name: $((total - bad)) passed, $bad failed"
    passed=$((passed + total - bad))
    failed=$((failed + bad))
  done
  echo "$passed passed, $failed failed"
  return $rc
}

case "${1:-help}" in
  demo) demo ;;
  test) test_all ;;
  build) build ;;
  bench) shift; build; "$root/bench/run.sh" "$@" ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
