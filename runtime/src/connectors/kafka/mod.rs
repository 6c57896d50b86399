//! Kafka: a source whose splits are sets of topic partitions
//! ([`KafkaSplit`]), a plain producer ([`KafkaWriter`], at least once) and
//! the exactly-once sink ([`TransactionalKafka`]), which share how a client
//! of the job is configured.

mod sink;
mod source;

use rdkafka::config::ClientConfig;

pub use sink::{KafkaWriter, TransactionalKafka, TARGETS};
pub use source::{partitions, KafkaSplit, READER_TUNING};

/// An error from librdkafka, with what was being done.
pub(crate) fn kafka_error(context: &str, e: rdkafka::error::KafkaError) -> std::io::Error {
    std::io::Error::other(format!("kafka {context}: {e}"))
}

/// Settings for a client of the job: the servers and `settings`, then the
/// user's `properties` (security and the like apply to every client).
pub(crate) fn client_config(
    bootstrap_servers: &str,
    settings: &[(&str, &str)],
    properties: &std::collections::BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    for (k, v) in settings.iter().copied() {
        config.set(k, v);
    }
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}
