#!/usr/bin/env bash
# Log, every 2 s, CPU-heavy processes that are not the benchmark's (pytest, other llama-servers, compilers), so a
# figure measured beside them can be discarded:  benchmarks/watch_foreign.sh <benchmark pid> > runs/bench/foreign.log
bench=$1
while kill -0 "$bench" 2>/dev/null; do
  ps -eo pid,ppid,pcpu,args --no-headers | awk -v b="$bench" '$2 != b && $1 != b && ($4 ~ /pytest|llama-server|cc1|mypy/ || $3 > 30) {print strftime("%T"), $0}' | cut -c1-160
  sleep 2
done
