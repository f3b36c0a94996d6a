#!/usr/bin/env bash
# Fails when a C++ file differs from .clang-format's style. Run by `make test`; fix with
# `make format`. With no argument it checks the files changed since origin/main (or the
# last commit when there is no origin), plus uncommitted ones; with `--all`, every
# tracked file. The whole tree was formatted once, so both give the same answer on main.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format > /dev/null || { echo "check_format: needs clang-format (scripts/install-deps.sh)" >&2; exit 1; }
if [ "${1:-}" = "--all" ]; then
  files=$(git ls-files '*.cpp' '*.h')
else
  base=$(git merge-base HEAD origin/main 2> /dev/null || git rev-parse HEAD~1 2> /dev/null || git rev-parse HEAD)
  files=$( (git diff --name-only --diff-filter=d "$base" -- '*.cpp' '*.h'; git ls-files --others --exclude-standard '*.cpp' '*.h') | sort -u)
fi
[ -z "$files" ] && { echo "check_format: no C++ file changed"; exit 0; }
bad=()
for f in $files; do
  [ -f "$f" ] || continue
  clang-format --dry-run -Werror "$f" > /dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "check_format: ${#bad[@]} file(s) not formatted (run \`make format\`):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "check_format: $(echo "$files" | wc -w) file(s) formatted"
