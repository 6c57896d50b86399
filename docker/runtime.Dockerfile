# syntax=docker/dockerfile:1
# The stream runtime image: the `streamjob` binary on Debian bookworm-slim,
# running as uid 10001. Build from the repository root:
#   docker build -f docker/runtime.Dockerfile -t ghcr.io/streamjob/streamjob:0.1.0 .

FROM rust:1-bookworm AS builder
# What the build needs (scripts/deps.sh installs the same): bindgen's libclang
# for RocksDB's bindings, cmake and g++ for RocksDB and librdkafka, and the
# native libraries of the Kafka and S3 clients.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang libclang-dev cmake g++ make pkg-config libssl-dev libsasl2-dev \
      zlib1g-dev libzstd-dev liblz4-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep crates and compiled dependencies (RocksDB takes ~10
# minutes on 2 cores) between builds; the binary is copied out of the cached
# target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p streamjob-runtime --bin streamjob \
 && install -D -m 0755 target/release/streamjob /out/streamjob

FROM debian:bookworm-slim
# ca-certificates for TLS to S3 and Kafka; the shared libraries the -dev
# packages above link against.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libstdc++6 libssl3 libsasl2-2 zlib1g libzstd1 liblz4-1 libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 streamjob \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/streamjob \
      --shell /usr/sbin/nologin streamjob \
 && install -d -o 10001 -g 10001 /var/lib/streamjob
COPY --from=builder /out/streamjob /usr/local/bin/streamjob
# Local state (RocksDB) lives under the working directory unless the job says otherwise.
WORKDIR /var/lib/streamjob
USER 10001:10001
# The control API (savepoints, stop-with-savepoint).
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/streamjob"]
