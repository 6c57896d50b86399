//! Semantic checks that serde cannot express. Every problem is reported with
//! the dotted path of the field and what would be accepted.

use std::fmt;

use super::{
    Changelog, EarlyFiring, JobSpec, OneOfError, RestartStrategy, Sink, SinkSpec, Source, Window,
};
use crate::Duration;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path, e.g. `window.tumbling.size`; empty for the whole document.
    pub path: String,
    pub message: String,
}

/// Everything wrong with a job spec, one line per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub errors: Vec<FieldError>,
}

impl SpecError {
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            errors: vec![FieldError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.path.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn positive(&mut self, path: &str, d: Duration) {
        if d.as_millis() <= 0 {
            self.add(path, format!("must be greater than 0, got \"{d}\""));
        }
    }

    /// A one-of choice at `path` must have exactly one option set.
    fn one_of<T>(&mut self, path: &str, choice: Result<T, OneOfError>) {
        if let Err(e) = choice {
            self.add(path, e.to_string());
        }
    }

    /// Servers and topics of a Kafka source or changelog at `path`.
    fn kafka_reader(&mut self, path: &str, kafka: &super::KafkaSourceSpec) {
        if kafka.bootstrap_servers.trim().is_empty() {
            self.add(
                format!("{path}.bootstrapServers"),
                "must not be empty, e.g. \"127.0.0.1:9092\"",
            );
        }
        if kafka.topics.is_empty() {
            self.add(format!("{path}.topics"), "name at least one topic");
        }
    }

    fn sink(&mut self, path: &str, sink: &SinkSpec) {
        self.one_of(path, sink.choice());
        for option in sink.set() {
            match option {
                Sink::Postgres(pg) => {
                    if pg.url.trim().is_empty() {
                        self.add(
                            format!("{path}.postgres.url"),
                            "must not be empty, e.g. \"host=127.0.0.1 port=5432 user=streamjob dbname=analytics\"",
                        );
                    }
                    if pg.table.trim().is_empty() {
                        self.add(format!("{path}.postgres.table"), "must not be empty");
                    }
                }
                Sink::Kafka(kafka) => {
                    if kafka.bootstrap_servers.trim().is_empty() {
                        self.add(
                            format!("{path}.kafka.bootstrapServers"),
                            "must not be empty, e.g. \"localhost:9092\"",
                        );
                    }
                    if kafka.topic.trim().is_empty() {
                        self.add(format!("{path}.kafka.topic"), "must not be empty");
                    }
                }
                Sink::File(file) => {
                    if file.path.trim().is_empty() {
                        self.add(format!("{path}.file.path"), "must not be empty");
                    }
                }
                Sink::Stdout | Sink::Discard => {}
            }
        }
    }
}

impl JobSpec {
    /// Checks the spec as a whole; all problems are returned together.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut p = Problems::default();

        if self.name.trim().is_empty() {
            p.add("name", "must not be empty");
        } else if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            // It names folders and key prefixes: "." or ".." would escape
            // them.
            || !self.name.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            p.add(
                "name",
                format!(
                    "may contain only letters, digits, '-', '_' and '.', and must start with a letter or digit, got {:?}",
                    self.name
                ),
            );
        }
        if self.parallelism == 0 {
            p.add("parallelism", "must be at least 1, got 0");
        }
        if !(1..=32_768).contains(&self.max_parallelism) {
            p.add(
                "maxParallelism",
                format!("must be between 1 and 32768, got {}", self.max_parallelism),
            );
        } else if self.parallelism > self.max_parallelism {
            p.add(
                "parallelism",
                format!(
                    "must not exceed maxParallelism ({}), got {}",
                    self.max_parallelism, self.parallelism
                ),
            );
        }

        // Source.
        p.one_of("source", self.source.choice());
        for option in self.source.set() {
            match option {
                Source::Kafka(kafka) => p.kafka_reader("source.kafka", kafka),
                Source::File(file) => match (&file.path, file.paths.is_empty()) {
                    (None, true) => p.add("source.file", "set path or paths"),
                    (Some(_), false) => p.add("source.file", "set only one of path, paths"),
                    _ => {}
                },
                Source::Generator(gen) => {
                    if gen.keys == 0 {
                        p.add("source.generator.keys", "must be at least 1, got 0");
                    }
                    if gen.events_per_ms == 0 {
                        p.add("source.generator.eventsPerMs", "must be at least 1, got 0");
                    }
                    if !(0.0..=1.0).contains(&gen.late_fraction) {
                        p.add(
                            "source.generator.lateFraction",
                            format!(
                                "must be between 0 and 1 (a share of the events, e.g. 0.01), got {}",
                                gen.late_fraction
                            ),
                        );
                    }
                    if gen.rate == Some(0) {
                        p.add(
                            "source.generator.rate",
                            "must be at least 1 event per second, or left out for no pacing",
                        );
                    }
                }
            }
        }

        p.positive("eventTime.maxAhead", self.event_time.max_ahead);

        // Watermark.
        if let Some(idle) = self.watermark.idle_timeout {
            p.positive("watermark.idleTimeout", idle);
        }

        if let Some(drift) = self.watermark.max_drift {
            p.positive("watermark.maxDrift", drift);
        }

        self.validate_enrich(&mut p);
        if self.select.is_empty() {
            self.validate_windowing(&mut p);
        } else {
            self.validate_select(&mut p);
        }

        // Sinks.
        p.sink("sink", &self.sink);
        for (name, side) in self.side_outputs.named() {
            if side
                .as_ref()
                .is_some_and(|s| matches!(s.choice(), Ok(Sink::Postgres(_))))
            {
                p.add(
                    format!("sideOutputs.{name}.postgres"),
                    "side outputs go to stdout, a file or Kafka; postgres takes the results only",
                );
            }
        }
        if let Ok(Sink::Postgres(pg)) = self.sink.choice() {
            let fields = pg.fields(self);
            for (i, column) in pg.columns.iter().enumerate() {
                if !self.result_fields().contains(column) {
                    p.add(
                        format!("sink.postgres.columns[{i}]"),
                        format!(
                            "{column:?} is not a field of the results; they have {}",
                            self.result_fields().join(", ")
                        ),
                    );
                }
            }
            for (i, column) in pg.upsert_key.iter().enumerate() {
                if !fields.contains(column) {
                    p.add(
                        format!("sink.postgres.upsertKey[{i}]"),
                        format!(
                            "{column:?} is not among the columns written ({})",
                            fields.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(late) = &self.side_outputs.late {
            p.sink("sideOutputs.late", late);
        }
        if let Some(unmatched) = &self.side_outputs.unmatched {
            p.sink("sideOutputs.unmatched", unmatched);
            if self.enrich.is_empty() {
                p.add(
                    "sideOutputs.unmatched",
                    "only records of an enrich lookup can be unmatched, and the job has no enrich: remove it",
                );
            }
        }
        if let Some(malformed) = &self.side_outputs.malformed {
            p.sink("sideOutputs.malformed", malformed);
            if self.side_outputs.fail_on_malformed {
                p.add(
                    "sideOutputs.failOnMalformed",
                    "cannot be true while sideOutputs.malformed is set: choose one",
                );
            }
        }

        self.validate_kafka_transactions(&mut p);

        // State.
        if self.state.max_keys_in_memory == 0 {
            p.add("state.maxKeysInMemory", "must be at least 1, got 0");
        }

        // Checkpoints.
        if let Some(c) = &self.checkpoints {
            p.positive("checkpoints.interval", c.interval);
            p.positive("checkpoints.timeout", c.timeout);
            if c.retained == 0 {
                p.add("checkpoints.retained", "must be at least 1, got 0");
            }
            if let Err(e) = crate::StorageUri::parse(&c.storage) {
                p.add("checkpoints.storage", e);
            }
        }

        // Restart strategy.
        if let Some(r) = &self.restart_strategy {
            p.one_of("restartStrategy", r.choice());
            for option in r.set() {
                match option {
                    RestartStrategy::ExponentialBackoff(b) => {
                        p.positive("restartStrategy.exponentialBackoff.initial", b.initial);
                        if b.max < b.initial {
                            p.add(
                                "restartStrategy.exponentialBackoff.max",
                                format!(
                                    "must be at least initial ({}), got \"{}\"",
                                    b.initial, b.max
                                ),
                            );
                        }
                        if b.multiplier.is_nan() || b.multiplier < 1.0 {
                            p.add(
                                "restartStrategy.exponentialBackoff.multiplier",
                                format!("must be at least 1, got {}", b.multiplier),
                            );
                        }
                    }
                    RestartStrategy::FixedDelay(_) => {}
                }
            }
        }

        if p.0.is_empty() {
            Ok(())
        } else {
            Err(SpecError { errors: p.0 })
        }
    }

    /// A Kafka sink under exactly-once checkpoints commits one transaction
    /// per checkpoint: the transaction must outlive a checkpoint interval
    /// and a recovery, and side outputs to Kafka join the same transaction,
    /// so they must go to the same cluster.
    fn validate_kafka_transactions(&self, p: &mut Problems) {
        let (Ok(Sink::Kafka(kafka)), Some(c)) = (self.sink.choice(), &self.checkpoints) else {
            return;
        };
        if c.mode != super::CheckpointMode::ExactlyOnce {
            return;
        }
        if let Ok(Source::Kafka(source)) = self.source.choice() {
            if source.topics.contains(&kafka.topic) {
                p.add(
                    "sink.kafka.topic",
                    format!(
                        "{:?} is also a source topic; a job cannot read its own exactly-once output (its checkpoint marker is committed on that topic): write to another topic",
                        kafka.topic
                    ),
                );
            }
        }
        let path = "sink.kafka.properties.transaction.timeout.ms";
        match kafka.transaction_timeout_ms() {
            Err(e) => p.add(path, e),
            Ok(timeout) => {
                let needed = c.interval.as_millis().max(0) as u64 + RECOVERY_ALLOWANCE_MS;
                if timeout <= needed {
                    p.add(
                        path,
                        format!(
                            "is {timeout} ms, but a transaction stays open for a checkpoint interval ({}) plus the time to recover; set it above {needed} ms (interval + 60 s), or shorten checkpoints.interval",
                            c.interval
                        ),
                    );
                }
            }
        }
        for (name, side) in self.side_outputs.named() {
            if let Some(Ok(Sink::Kafka(side))) = side.as_ref().map(SinkSpec::choice) {
                if side.bootstrap_servers != kafka.bootstrap_servers {
                    p.add(
                        format!("sideOutputs.{name}.kafka.bootstrapServers"),
                        format!(
                            "must be the sink's ({:?}): side outputs are written in the sink's transactions, got {:?}",
                            kafka.bootstrap_servers, side.bootstrap_servers
                        ),
                    );
                }
            }
        }
    }
}

/// The most sliding windows one element may be in (size / slide): each
/// element updates that many windows, and each pane end fires that many.
const MAX_WINDOWS_PER_ELEMENT: i64 = 10_000;

/// Time allowed for a crashed job to come back before its open transaction
/// times out (the transaction timeout must exceed interval + this).
const RECOVERY_ALLOWANCE_MS: u64 = 60_000;

impl JobSpec {
    /// Key, window, trigger and aggregates of a windowed job.
    fn validate_windowing(&self, p: &mut Problems) {
        let source = self.source.choice().ok();
        let generated = matches!(source, Some(Source::Generator(_)));
        // Event time and key, as far as the source decides them.
        if let (Some(Source::Kafka(_) | Source::File(_)), None) = (source, &self.event_time.field) {
            p.add(
                "eventTime.field",
                format!(
                    "required for a {} source: name the field that holds each record's event time",
                    source.map_or("", Source::name)
                ),
            );
        }
        if generated && self.key.len() != 1 {
            p.add(
                "key",
                "a generator source produces one integer key: name exactly one key field",
            );
        }
        // Key.
        if self.key.is_empty() {
            p.add("key", "name at least one field to key by");
        }
        for (i, field) in self.key.iter().enumerate() {
            if field.trim().is_empty() {
                p.add(format!("key[{i}]"), "must not be empty");
            }
        }

        // Window.
        p.one_of("window", self.window.choice());
        for option in self.window.set() {
            match option {
                Window::Tumbling(t) => {
                    p.positive("window.tumbling.size", t.size);
                    if t.size.as_millis() > 0 && t.offset >= t.size {
                        p.add(
                            "window.tumbling.offset",
                            format!(
                                "must be smaller than the size ({}), got \"{}\"",
                                t.size, t.offset
                            ),
                        );
                    }
                }
                Window::Sliding(s) => {
                    p.positive("window.sliding.size", s.size);
                    p.positive("window.sliding.slide", s.slide);
                    if s.slide > s.size && s.size.as_millis() > 0 {
                        p.add(
                            "window.sliding.slide",
                            format!("must not exceed the size ({}), got \"{}\"", s.size, s.slide),
                        );
                    }
                    let (size, slide) = (s.size.as_millis(), s.slide.as_millis());
                    if slide > 0 && size >= slide {
                        // Each element is in ceil(size / slide) windows.
                        let windows = (size + slide - 1) / slide;
                        if windows > MAX_WINDOWS_PER_ELEMENT {
                            let least =
                                (size + MAX_WINDOWS_PER_ELEMENT - 1) / MAX_WINDOWS_PER_ELEMENT;
                            p.add(
                                "window.sliding.slide",
                                format!(
                                    "a window of {} every {} puts each element in {windows} windows, more than the {MAX_WINDOWS_PER_ELEMENT} allowed: make the slide at least {}",
                                    s.size,
                                    s.slide,
                                    Duration::from_millis(least)
                                ),
                            );
                        }
                    }
                    if s.slide.as_millis() > 0 && s.offset >= s.slide {
                        p.add(
                            "window.sliding.offset",
                            format!(
                                "must be smaller than the slide ({}), got \"{}\"",
                                s.slide, s.offset
                            ),
                        );
                    }
                }
                Window::Session(s) => p.positive("window.session.gap", s.gap),
            }
        }

        // Trigger.
        if let Some(early) = &self.trigger.early {
            p.one_of("trigger.early", early.choice());
            for option in early.set() {
                match option {
                    EarlyFiring::EveryEventTime(d) => p.positive("trigger.early.everyEventTime", d),
                    EarlyFiring::EveryProcessingTime(d) => {
                        p.positive("trigger.early.everyProcessingTime", d)
                    }
                    EarlyFiring::EveryElements(0) => {
                        p.add("trigger.early.everyElements", "must be at least 1, got 0")
                    }
                    EarlyFiring::EveryElements(_) => {}
                }
            }
        }

        // Aggregates.
        if self.aggregates.is_empty() {
            p.add(
                "aggregates",
                "name at least one aggregate, e.g. {name: events, function: count}",
            );
        }
        let reserved = ["window_start", "window_end", "partial", "emit_time"];
        let mut seen: Vec<&str> = Vec::new();
        for (i, agg) in self.aggregates.iter().enumerate() {
            let path = format!("aggregates[{i}]");
            if agg.name.trim().is_empty() {
                p.add(format!("{path}.name"), "must not be empty");
            } else if reserved.contains(&agg.name.as_str()) || self.key.contains(&agg.name) {
                p.add(
                    format!("{path}.name"),
                    format!("{:?} is already a field of the output record (key, window_start, window_end, partial, emit_time); choose another name", agg.name),
                );
            } else if seen.contains(&agg.name.as_str()) {
                p.add(
                    format!("{path}.name"),
                    format!("{:?} is used by an earlier aggregate", agg.name),
                );
            }
            seen.push(&agg.name);
            match (&agg.field, agg.function.needs_field()) {
                (None, true) => p.add(
                    format!("{path}.field"),
                    format!("required for function {}", agg.function.name()),
                ),
                (Some(_), false) => {
                    p.add(format!("{path}.field"), "count takes no field; remove it")
                }
                (Some(field), true) if generated && field != "value" => p.add(
                    format!("{path}.field"),
                    format!("a generator source has only the field \"value\", got {field:?}"),
                ),
                _ => {}
            }
        }
    }

    /// Lookups: names usable as field and folder names, one changelog each,
    /// and records with fields to look up by (not generated ones).
    fn validate_enrich(&self, p: &mut Problems) {
        if !self.enrich.is_empty() && matches!(self.source.choice(), Ok(Source::Generator(_))) {
            p.add(
                "enrich",
                "a generator's events have no fields to look up by: use a file or kafka source",
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, lookup) in self.enrich.iter().enumerate() {
            let path = format!("enrich[{i}]");
            let name = lookup.name.as_str();
            if name.is_empty() {
                p.add(format!("{path}.name"), "must not be empty, e.g. \"user\"");
            } else if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                p.add(
                    format!("{path}.name"),
                    format!("{name:?} may hold only letters, digits, '_' and '-' (it names the field added and the table's state)"),
                );
            } else if seen.contains(&name) {
                p.add(
                    format!("{path}.name"),
                    format!("{name:?} is used by an earlier lookup"),
                );
            }
            seen.push(name);
            if lookup.key.trim().is_empty() {
                p.add(
                    format!("{path}.key"),
                    "name the changelog record's key field, e.g. \"id\"",
                );
            }
            let first = lookup.on.split('.').next().unwrap_or_default();
            if lookup.on.trim().is_empty() {
                p.add(
                    format!("{path}.on"),
                    "name the record's field to look up, e.g. \"user_id\"",
                );
            } else if let Some(later) = self.enrich[i..].iter().find(|l| l.name == first) {
                p.add(
                    format!("{path}.on"),
                    format!(
                        "{:?} is the entry of lookup {:?}, which is added after this one: only earlier lookups' fields can be looked up by",
                        lookup.on, later.name
                    ),
                );
            }
            for (j, field) in lookup.fields.iter().enumerate() {
                if field.trim().is_empty() {
                    p.add(format!("{path}.fields[{j}]"), "must not be empty");
                }
            }
            p.one_of(&format!("{path}.from"), lookup.from.choice());
            for option in lookup.from.set() {
                match option {
                    Changelog::Kafka(kafka) => {
                        if kafka.start_from == super::StartFrom::Latest {
                            p.add(
                                format!("{path}.from.kafka.startFrom"),
                                "a changelog is read from its start (the entries written before the job are the table): remove startFrom: latest",
                            );
                        }
                        if let Some(reset) = kafka.properties.get("auto.offset.reset") {
                            if !["earliest", "smallest", "beginning"].contains(&reset.as_str()) {
                                p.add(
                                    format!("{path}.from.kafka.properties.auto.offset.reset"),
                                    format!("{reset:?} would skip entries of the changelog after an offset it no longer has; a changelog is reread from its start (earliest): remove it"),
                                );
                            }
                        }
                        p.kafka_reader(&format!("{path}.from.kafka"), kafka);
                    }
                    Changelog::File(file) if file.path.is_none() || !file.paths.is_empty() => {
                        p.add(
                            format!("{path}.from.file"),
                            "set path, one file: a changelog's lines are applied in order (paths would interleave files)",
                        );
                    }
                    Changelog::File(_) => {}
                }
            }
        }
    }

    /// A select job passes each record's `select` fields through: nothing
    /// of a windowed job applies.
    fn validate_select(&self, p: &mut Problems) {
        if matches!(self.source.choice(), Ok(Source::Generator(_))) {
            p.add(
                "select",
                "a generator's events have no fields to select: use a file or kafka source, or window the generated stream",
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, field) in self.select.iter().enumerate() {
            if field.trim().is_empty() {
                p.add(format!("select[{i}]"), "must not be empty");
            } else if seen.contains(&field.as_str()) {
                p.add(
                    format!("select[{i}]"),
                    format!("{field:?} is selected twice"),
                );
            }
            seen.push(field);
        }
        let windowing = [
            ("key", !self.key.is_empty()),
            ("window", self.window.is_set()),
            ("trigger", self.trigger.early.is_some()),
            ("allowedLateness", self.allowed_lateness.as_millis() > 0),
            ("aggregates", !self.aggregates.is_empty()),
            ("sideOutputs.late", self.side_outputs.late.is_some()),
        ];
        for (field, set) in windowing {
            if set {
                p.add(
                    field,
                    "a select job passes records through unkeyed and unwindowed: remove it, or select nothing and window the stream",
                );
            }
        }
    }
}
