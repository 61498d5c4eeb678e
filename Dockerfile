# syntax=docker/dockerfile:1
#
# The parloir container image: one binary (linked to glibc and libgcc_s only)
# on distroless, non-root, no shell. ENTRYPOINT is the binary, so
# `docker run IMAGE migrate` and `docker run IMAGE token --user alice` run
# the other subcommands.
#
#   docker build -t parloir:dev .
#   docker run --rm -p 3000:3000 -e DATABASE_URL=... -e REDIS_URL=... -e JWT_SECRET=... parloir:dev
#
# There is no Docker engine on the development machines or in CI: this file
# is linted by scripts/lint-deploy (hadolint), and its build step is exactly
# `cargo build --release --locked --bin parloir` with SQLX_OFFLINE=true (what
# scripts/test uses), which is checked by running it locally.
#
# Layers: cargo-chef's recipe (manifests + Cargo.lock only) feeds the
# dependency build, so editing src/ rebuilds only the parloir crate.

FROM rust:1.95.0-slim-bookworm AS chef
# rust:*-slim ships gcc and libc6-dev: enough for ring and the bundled SQLite
# (no OpenSSL, no cmake in the dependency tree).
RUN cargo install cargo-chef --locked --version 0.1.78 \
    && rm -rf "${CARGO_HOME}/registry" "${CARGO_HOME}/git"
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Published crates carried with a patch ([patch.crates-io] in Cargo.toml) are
# dependencies too: the recipe names their path, the cook builds them.
COPY vendor vendor
# Dependencies only: this layer is reused until Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked --bin parloir --recipe-path recipe.json
COPY . .
# The release profile keeps line tables (debug = "line-tables-only"): ~120 MB
# binary. By default the image gets it with debug sections stripped (~22 MB;
# symbols stay, so backtraces keep function names);
# --build-arg DEBUGINFO=keep ships file:line backtraces instead.
ARG DEBUGINFO=strip
RUN cargo build --release --locked --bin parloir \
    && install -D -m 0755 target/release/parloir /out/usr/local/bin/parloir \
    && if [ "${DEBUGINFO}" = strip ]; then objcopy --strip-debug /out/usr/local/bin/parloir; fi \
    && mkdir -p /out/data

# glibc + libgcc, CA certificates, /etc/passwd with nonroot (65532); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/usr/local/bin/parloir /usr/local/bin/parloir
# Writable data dir for the embedded (SQLite) mode and the dev JWT secret;
# unused with DATABASE_URL + JWT_SECRET (the Helm chart's read-only root).
COPY --from=builder --chown=65532:65532 /out/data /data
ENV PARLOIR_BIND=0.0.0.0:3000 \
    PARLOIR_DATA_DIR=/data
USER 65532:65532
EXPOSE 3000
# No HEALTHCHECK: Kubernetes probes GET /healthz (liveness) and /readyz (readiness).
ENTRYPOINT ["/usr/local/bin/parloir"]
CMD ["serve"]
