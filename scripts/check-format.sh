#!/usr/bin/env bash
# Fails, naming the files, when a tracked C/C++ file is not formatted as the
# root .clang-format says. Fix with: clang-format -i FILE...
# Usage: scripts/check-format.sh   (from anywhere in the repository)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mapfile -t files < <(git ls-files -- '*.c' '*.cc' '*.cpp' '*.h' '*.hpp')
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-format: no tracked C/C++ files (not a git checkout?)" >&2
  exit 1
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ "${#bad[@]}" -gt 0 ]; then
  echo "check-format: ${#bad[@]} of ${#files[@]} C/C++ files out of format (clang-format -i them):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "check-format: ${#files[@]} C/C++ files formatted"
