# syntax=docker/dockerfile:1
# keepalive-sidecar image (STYLE.md §8). Two stages: `build` compiles TypeScript with the dev dependencies;
# `runtime` holds production dependencies, the bundled CLI (dist/bundle, made by scripts/bundle.mjs in the build stage) and config/ only.
# The glibc base matters: ffi-rs (our setsockopt and getsockopt binding, src/sockopts/native.ts) ships a prebuilt glibc binary, and
# musl (alpine) would need a toolchain to build it.
# test/integration/image-layout.test.ts replays the runtime stage below step by step, so keep its RUN
# commands to the ones that test understands (npm ci, chmod, ln -s, mkdir).
ARG NODE_VERSION=26

FROM node:${NODE_VERSION}-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts/bundle.mjs ./scripts/bundle.mjs
RUN npm run build

FROM node:${NODE_VERSION}-trixie-slim AS runtime
# A top-level ARG is visible in FROM lines only; re-declare it so the base.name label below sees it
# (scripts/image-test.sh reads the label back from the built image).
ARG NODE_VERSION
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="keepalive-sidecar" \
      org.opencontainers.image.description="Sidecar proxy that drops dead upstream connections the moment the kernel knows (per-socket keepalive + TCP_USER_TIMEOUT)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://example.invalid/keepalive-sidecar" \
      org.opencontainers.image.base.name="node:${NODE_VERSION}-trixie-slim"
ENV NODE_ENV=production
# glibc returns freed heap memory to the kernel once 128 KiB are free at the top of a heap (its default trim
# threshold, before glibc raises it dynamically). Without this, the malloc arena of the V8 thread that compiles
# undici's WebAssembly parser on the first HTTP request keeps ~10 MiB it no longer uses: idle RSS after one
# request 69 -> 60 MiB, no CPU change measured (bench/results/2026-12-02-rss). glibc reads it at process start only.
ENV MALLOC_TRIM_THRESHOLD_=131072
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; npm's cache is dropped so it does not end up in the layer.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/bundle ./dist/bundle
COPY config ./config
# The entrypoint sizes V8's heap from the cgroup memory limit and execs node, so node is PID 1 and receives
# SIGTERM itself (the CLI drains on SIGTERM; it starts no child processes, so there are no zombies to reap).
COPY image/entrypoint.sh ./bin/entrypoint.sh
RUN chmod 0755 /app/bin/entrypoint.sh && ln -s /app/bin/entrypoint.sh /usr/local/bin/keepalive-sidecar
# Numeric UID of the base image's `node` user, so Kubernetes can check runAsNonRoot without /etc/passwd.
USER 1000:1000
# Admin port (/live, /ready, /metrics). Route ports come from the configuration.
EXPOSE 9901
ENTRYPOINT ["keepalive-sidecar"]
CMD ["run"]
