#!/usr/bin/env bash
# The image, built for real and run: builds the Dockerfile with buildah (no
# daemon) on a local Debian 12 base made by mmdebstrap (no registry is
# reachable here; the Dockerfile's BASE defaults to the official debian:12),
# reports its size and build time, runs both binaries' --version inside it,
# checks what it holds (OCI labels, a non-root user, no compiler), then runs
# the image's agent in the namespace lab with ONLY the capabilities the chart
# grants and passes real TCP through a VIP (e2e/image_lab.py). Each of those
# capabilities is then taken away in turn, and the same run must fail: the
# set is minimal, and the test can fail. Needs root.
# Usage: e2e/image_test.sh BUILD_DIR SOURCE_DIR
# Prints FIGURE image_mb, FIGURE image_build_s.
set -euo pipefail
build=$1
src=$2
"$src/scripts/install-deps.sh" >/dev/null
prefix=${FLOWLB_E2E_PREFIX:+$FLOWLB_E2E_PREFIX-}flimg  # FLOWLB_E2E_PREFIX as in e2e/README.md
image=localhost/flowlb:e2e
base=localhost/debian:12
tmp=$(mktemp -d)
ctr=""
cleanup() {
  if [ -n "$ctr" ]; then buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true; fi
  "$src/e2e/lab/lab.sh" down "$prefix" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
bud=(buildah bud --layers --isolation chroot --network host --ulimit nofile=20000:20000)

# The base: Debian 12 minbase, imported once and kept (about 80 s to make).
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  echo "making $base with mmdebstrap"
  mmdebstrap --quiet --variant=minbase bookworm "$tmp/rootfs.tar" http://deb.debian.org/debian
  c=$(buildah from scratch)
  buildah add "$c" "$tmp/rootfs.tar" / >/dev/null
  buildah commit --quiet "$c" "$base" >/dev/null
  buildah rm "$c" >/dev/null
  rm -f "$tmp/rootfs.tar"
fi

commit=$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git -C "$src" diff --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
SECONDS=0
if "${bud[@]}" --build-arg BASE="$base" --build-arg GIT_COMMIT="$commit" -t "$image" -f "$src/Dockerfile" "$src" \
     >"$tmp/build.log" 2>&1; then
  grep -E "^\[[0-9]/[0-9]\] STEP|Using cache|^--> |ccache" "$tmp/build.log" | grep -B1 "Using cache" | grep STEP |
    sed 's/^/     cached: /' || true
  pass "the Dockerfile builds (buildah, from $base)"
else
  tail -30 "$tmp/build.log"
  fail "image build"
  exit 1
fi
secs=$SECONDS
echo "FIGURE image_build_s $secs s (this run; cold and warm in docs/install.md)"

ctr=$(buildah from "$image")
root=$(buildah mount "$ctr")
mb=$(du -sm --apparent-size "$root" | cut -f1)
echo "FIGURE image_mb $mb MB (uncompressed root filesystem)"

for bin in agent controller; do
  out=$(buildah run --isolation chroot "$ctr" -- "/usr/local/bin/flowlb-$bin" --version 2>&1 || true)
  if [[ "$out" == "flowlb-$bin 0.1.0 (commit $commit)" ]]; then pass "$bin --version in the image: $out"
  else fail "$bin --version in the image: '$out' (want commit $commit)"; fi
done
user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
[ "$user" = "65532:65532" ] && pass "the image runs as 65532:65532 by default (the controller is non-root)" ||
  fail "image user '$user'"
labels=$(buildah inspect --type image "$image" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["OCIv1"]["config"]["Labels"]))')
for l in org.opencontainers.image.source org.opencontainers.image.version org.opencontainers.image.revision \
         io.flowlb.agent.capabilities; do
  grep -q "\"$l\"" <<<"$labels" && pass "label $l" || fail "no label $l"
done
compilers=$(ls "$root"/usr/bin/{gcc,g++,cc,c++,clang,cmake,ninja,ld} 2>/dev/null || true)
[ -z "$compilers" ] && pass "no compiler or build tool in the image" || fail "build tools shipped: $compilers"
ls "$root"/usr/include/grpcpp >/dev/null 2>&1 && fail "-dev headers shipped" || pass "no -dev headers in the image"

# The capabilities: what the chart grants, and what the image says it needs.
caps=$(python3 - "$("$src/scripts/install-helm.sh")" "$src/charts/flowlb" <<'PY'
import subprocess, sys, yaml
out = subprocess.run([sys.argv[1], "template", "flowlb", sys.argv[2], "--show-only", "templates/agent.yaml"],
                     check=True, capture_output=True, text=True).stdout
c = next(yaml.safe_load_all(out))["spec"]["template"]["spec"]["containers"][0]
print(",".join(c["securityContext"]["capabilities"]["add"]))
PY
)
label_caps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["io.flowlb.agent.capabilities"])' "$labels")
[ "$caps" = "$label_caps" ] && pass "the image label and the chart grant the same capabilities: $caps" ||
  fail "chart grants $caps, the image label says $label_caps"

echo "== the image's agent in the lab with the chart's capabilities ($caps) =="
if (cd "$src" && python3 -m e2e.image_lab "$root" "$caps" "$prefix"); then
  pass "the image's agent forwards real TCP with only $caps"
else
  fail "the image's agent with the chart's capabilities"
fi
echo "== each capability taken away must break it =="
IFS=, read -ra list <<<"$caps"
for drop in "${list[@]}"; do
  fewer=$(printf '%s\n' "${list[@]}" | grep -vx "$drop" | paste -sd, -)
  if (cd "$src" && python3 -m e2e.image_lab "$root" "$fewer" "$prefix") >"$tmp/lab.log" 2>&1; then
    cat "$tmp/lab.log"
    fail "without $drop the agent still works: the chart grants more than it needs"
  else
    pass "without $drop it fails: $(grep -m1 '^FAIL' "$tmp/lab.log" | cut -c6-)"
  fi
done

echo "image_test: $fails failure(s)"
[ "$fails" -eq 0 ]
