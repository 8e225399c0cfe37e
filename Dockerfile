# syntax=docker/dockerfile:1
# The keyturn-operator image: built from this workspace in a Rust image, run from distroless
# (no shell, no package manager) as the unprivileged user 65532. See docs/container-image.md;
# this file has not been built on the development machines (they have no Docker engine).
#
#   docker build -t keyturn-operator:dev .

# ---- build ---------------------------------------------------------------------------------
# The workspace's rust-version (Cargo.toml) is 1.95; Debian bookworm underneath, the same glibc
# as the runtime image.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src

# Every workspace member must be present for cargo to load the workspace, even the ones the
# operator does not depend on (e2e/*); .dockerignore keeps target/ and the rest out.
COPY Cargo.toml Cargo.lock ./
COPY operator ./operator
COPY crds ./crds
COPY rotators ./rotators
COPY e2e ./e2e
COPY plugin ./plugin

# --locked: exactly the dependency versions in Cargo.lock. The cache mounts keep the registry
# and target directory between builds; the binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p keyturn-operator \
    && install -D -m 0755 target/release/keyturn-operator /out/keyturn-operator \
    && install -d -m 0700 /out/keyturn-data

# ---- runtime -------------------------------------------------------------------------------
# cc-debian12: glibc and libgcc (the binary links them dynamically), CA certificates and
# tzdata; no shell. The :nonroot tag already runs as 65532, set again below so that
# runAsNonRoot can check a numeric user.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="keyturn-operator" \
      org.opencontainers.image.description="Rotates credentials before they expire" \
      org.opencontainers.image.source="https://github.com/keyturn/keyturn" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/keyturn-operator /usr/local/bin/keyturn-operator

# The SQLite audit store's default directory, owned by the runtime user so that `docker run`
# without a volume works too; the chart mounts a volume here (the pod's root file system is
# read-only).
COPY --from=build --chown=65532:65532 /out/keyturn-data /var/lib/keyturn
WORKDIR /var/lib/keyturn
USER 65532:65532
EXPOSE 8080 8443

ENTRYPOINT ["/usr/local/bin/keyturn-operator"]
CMD ["run"]
