#!/bin/sh
# Image entrypoint (/usr/local/bin/keepalive-sidecar): bounds V8's heap by the container's memory limit, then
# execs node, so node is PID 1 and receives SIGTERM itself. Measured (scripts/image-test.sh): Node 26 reads
# the cgroup limit, but its heap limit stays ~262 MiB under a 128 Mi or 256 Mi limit, and with default
# semi-spaces RSS reached 207 MiB under load — the kernel would OOM-kill the pod before V8 collected.
# Old space = half the limit (the rest: young generation, code, socket buffers, native memory). Semi-space
# (V8's young generation is 3 of them) = limit/16, 1..16 MiB, so 16 MiB from a 256 Mi limit up: a small one
# costs CPU on every request (bench/results/2026-12-02-gc: 4 MiB, the old limit/64 at 256 Mi, cost +15-20 %
# CPU per HTTP request against 16 MiB, for ~10-20 MiB less RSS under load). Idle RSS does not change: V8 starts
# the young generation at 1 MiB and grows it under load only (no --min-semi-space-size: +7 MiB idle).
# Without a limit, --max-semi-space-size=16 still (Node versions differ in their default; on the dev box's
# Node 20, 16 MiB is V8's own default, so `npm start` and bin.js's shebang set nothing). Each flag is left
# out when NODE_OPTIONS sets it already.
set -eu
app=$(dirname "$(readlink -f "$0")")/..
limit=
if [ -r /sys/fs/cgroup/memory.max ]; then
  limit=$(cat /sys/fs/cgroup/memory.max)
elif [ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
  limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
fi
old=
semi=16
case "$limit" in
  '' | max | *[!0-9]*) ;;
  *)
    mib=$((limit / 1048576))
    # cgroup v1 reports "no limit" as a huge number.
    if [ "$mib" -gt 0 ] && [ "$mib" -lt 65536 ]; then
      old=$((mib / 2))
      semi=$((mib / 16))
      [ "$semi" -ge 1 ] || semi=1
      [ "$semi" -le 16 ] || semi=16
    fi
    ;;
esac
flags=
case "${NODE_OPTIONS:-}" in
  *max-old-space-size*) ;;
  *) [ -z "$old" ] || flags="--max-old-space-size=$old" ;;
esac
case "${NODE_OPTIONS:-}" in
  *max-semi-space-size*) ;;
  *) flags="$flags --max-semi-space-size=$semi" ;;
esac
# shellcheck disable=SC2086 # $flags is up to two words
exec node $flags "$app/dist/bundle/bin.js" "$@"
