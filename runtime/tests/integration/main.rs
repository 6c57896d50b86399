//! The runtime's integration tests, as one test binary: each binary links
//! RocksDB, librdkafka and the AWS SDK, so one binary links them once.
//! Each module is one area; `common` holds the helpers and the test
//! servers (Kafka, S3, PostgreSQL) they share.

mod common;

mod bad_records;
mod checkpoints;
mod control_api;
mod dashboard;
mod engine_model;
mod enrichment;
mod grafana;
mod kafka_sink;
mod kafka_source;
mod kafka_transactions;
mod local_jobs;
mod pods;
mod postgres_sink;
mod record_decoding;
mod spec_errors;
mod window_model;
