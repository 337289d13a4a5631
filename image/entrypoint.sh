#!/bin/sh
# Image entrypoint (/usr/local/bin/keepalive-sidecar): bounds V8's heap by the container's memory limit, then
# execs node, so node is PID 1 and receives SIGTERM itself. Measured (scripts/image-test.sh): Node 26 reads
# the cgroup limit, but its heap limit stays ~262 MiB under a 128 Mi or 256 Mi limit, and with default
# semi-spaces RSS reached 207 MiB under load — the kernel would OOM-kill the pod before V8 collected.
# Old space = half the limit (the rest: young generation, code, socket buffers, native memory), semi-space =
# limit/64 (1..16 MiB). NODE_OPTIONS with --max-old-space-size set by the user wins.
set -eu
app=$(dirname "$(readlink -f "$0")")/..
limit=
if [ -r /sys/fs/cgroup/memory.max ]; then
  limit=$(cat /sys/fs/cgroup/memory.max)
elif [ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
  limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
fi
flags=
case "${NODE_OPTIONS:-}" in
  *max-old-space-size*) ;;
  *)
    case "$limit" in
      '' | max | *[!0-9]*) ;;
      *)
        mib=$((limit / 1048576))
        # cgroup v1 reports "no limit" as a huge number.
        if [ "$mib" -gt 0 ] && [ "$mib" -lt 65536 ]; then
          semi=$((mib / 64))
          [ "$semi" -ge 1 ] || semi=1
          [ "$semi" -le 16 ] || semi=16
          flags="--max-old-space-size=$((mib / 2)) --max-semi-space-size=$semi"
        fi
        ;;
    esac
    ;;
esac
# shellcheck disable=SC2086 # $flags is two words or none
exec node $flags "$app/dist/bundle/bin.js" "$@"
