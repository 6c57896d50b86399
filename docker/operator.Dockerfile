# syntax=docker/dockerfile:1
# The operator image: `streamjob-operator` (and `crdgen`, which prints the
# StreamJob CRD) on Debian bookworm-slim, running as uid 10001. Build from the
# repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/streamjob/streamjob-operator:0.1.0 .

FROM rust:1-bookworm AS builder
# The operator links the contract crates only (spec, api, storage), no stream
# engine: no RocksDB or librdkafka to build. cmake builds the S3 client's TLS
# library (aws-lc).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p streamjob-operator --bin streamjob-operator --bin crdgen \
 && install -D -m 0755 target/release/streamjob-operator /out/streamjob-operator \
 && install -D -m 0755 target/release/crdgen /out/crdgen

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 streamjob \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin streamjob
COPY --from=builder /out/streamjob-operator /out/crdgen /usr/local/bin/
USER 10001:10001
# Metrics and /healthz (the chart's metricsPort).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/streamjob-operator"]
