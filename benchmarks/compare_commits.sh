#!/bin/bash
# Before/after in one run: the engine-overhead and in-query-parallelism benchmarks on an older commit and on
# this checkout, alternating, so both see the same machine state (docs/benchmarks.md, issue #13).
#   benchmarks/compare_commits.sh <before-commit> [problems]      # run on an idle machine; ~20 min
set -euo pipefail
before_commit=${1:?usage: $0 <before-commit> [problems]}
problems=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
py=$here/.venv/bin/python
before=$(mktemp -d)/before
git -C "$here" worktree add --detach -q "$before" "$before_commit"
trap 'git -C "$here" worktree remove --force "$before"' EXIT
run() {  # side, script args...
  local dir=$here; [ "$1" = before ] && dir=$before
  echo "=== $1 ($(git -C "$dir" rev-parse --short HEAD)) $2 $(date +%T)"
  (cd "$dir" && PYTHONPATH=$dir "$py" "${@:2}")
}
for round in 1 2; do
  for side in before after; do
    run $side benchmarks/bench_engine_overhead.py --calls 20000 --http-calls 2000 --concurrency 256 --repeat 3
  done
done
for side in before after; do
  run $side benchmarks/bench_arch_parallel.py --arch sample-8-vote --problems "$problems" --slots 8
done
