//! Typed views of the spec's one-of choices.
//!
//! In YAML a choice is an object with one of several keys (`source: {kafka:
//! …}`), so the spec types keep it as a struct of optional fields: that
//! keeps the CRD schema structural and the YAML users write unchanged. Code
//! never reads those fields to work out which option is set; it asks the
//! choice's `choice()` accessor for an enum and matches on it. The accessor
//! is also where "none set" and "two set" become the spec's error messages,
//! so validation and the runtime agree on them.

use std::fmt;

use crate::{
    ChangelogSpec, Duration, EarlyFiringSpec, ExponentialBackoffSpec, FileSinkSpec, FileSourceSpec,
    FixedDelaySpec, GeneratorSpec, KafkaSinkSpec, KafkaSourceSpec, PostgresSinkSpec,
    RestartStrategySpec, SessionSpec, SinkSpec, SlidingSpec, SourceSpec, SpecError, TumblingSpec,
    WindowSpec,
};

/// A one-of choice with no option set, or with more than one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOfError {
    options: &'static [&'static str],
    set: Vec<&'static str>,
}

impl OneOfError {
    /// The error as a spec error about the choice at `path`, e.g. `source`.
    pub fn at(&self, path: impl Into<String>) -> SpecError {
        SpecError::single(path, self.to_string())
    }
}

impl fmt::Display for OneOfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = self.options.join(", ");
        if self.set.is_empty() {
            write!(f, "set one of {options}")
        } else {
            write!(
                f,
                "set only one of {options}, got {}",
                self.set.join(" and ")
            )
        }
    }
}

impl std::error::Error for OneOfError {}

/// The one option of `options` that is set; `names` are their spec names,
/// in the same order.
fn pick<T, const N: usize>(
    names: &'static [&'static str; N],
    options: [Option<T>; N],
) -> Result<T, OneOfError> {
    let set: Vec<&'static str> = names
        .iter()
        .zip(&options)
        .filter(|(_, o)| o.is_some())
        .map(|(name, _)| *name)
        .collect();
    if set.len() != 1 {
        return Err(OneOfError {
            options: names,
            set,
        });
    }
    Ok(options.into_iter().flatten().next().expect("one is set"))
}

/// Where a job's records come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source<'a> {
    File(&'a FileSourceSpec),
    Generator(&'a GeneratorSpec),
    Kafka(&'a KafkaSourceSpec),
}

impl Source<'_> {
    /// The option's name in the spec (snapshots record it, to refuse a
    /// restore into another kind of source).
    pub fn name(self) -> &'static str {
        match self {
            Source::File(_) => "file",
            Source::Generator(_) => "generator",
            Source::Kafka(_) => "kafka",
        }
    }
}

impl SourceSpec {
    /// The one option set, or why there is not one.
    pub fn choice(&self) -> Result<Source<'_>, OneOfError> {
        pick(&["file", "generator", "kafka"], self.options())
    }

    /// Every option set, in the spec's order (validation checks each, also
    /// when more than one is set).
    pub fn set(&self) -> impl Iterator<Item = Source<'_>> {
        self.options().into_iter().flatten()
    }

    fn options(&self) -> [Option<Source<'_>>; 3] {
        [
            self.file.as_ref().map(Source::File),
            self.generator.as_ref().map(Source::Generator),
            self.kafka.as_ref().map(Source::Kafka),
        ]
    }
}

/// Where results (or a side output's records) go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sink<'a> {
    Stdout,
    File(&'a FileSinkSpec),
    Discard,
    Kafka(&'a KafkaSinkSpec),
    Postgres(&'a PostgresSinkSpec),
}

impl SinkSpec {
    /// The one option set, or why there is not one.
    pub fn choice(&self) -> Result<Sink<'_>, OneOfError> {
        pick(
            &["stdout", "file", "discard", "kafka", "postgres"],
            self.options(),
        )
    }

    /// Every option set, in the spec's order (validation checks each, also
    /// when more than one is set).
    pub fn set(&self) -> impl Iterator<Item = Sink<'_>> {
        self.options().into_iter().flatten()
    }

    fn options(&self) -> [Option<Sink<'_>>; 5] {
        [
            self.stdout.as_ref().map(|_| Sink::Stdout),
            self.file.as_ref().map(Sink::File),
            self.discard.as_ref().map(|_| Sink::Discard),
            self.kafka.as_ref().map(Sink::Kafka),
            self.postgres.as_ref().map(Sink::Postgres),
        ]
    }
}

/// The window kind of a windowed job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window<'a> {
    Tumbling(&'a TumblingSpec),
    Sliding(&'a SlidingSpec),
    Session(&'a SessionSpec),
}

impl WindowSpec {
    /// The one option set, or why there is not one.
    pub fn choice(&self) -> Result<Window<'_>, OneOfError> {
        pick(&["tumbling", "sliding", "session"], self.options())
    }

    /// Every option set, in the spec's order (validation checks each, also
    /// when more than one is set).
    pub fn set(&self) -> impl Iterator<Item = Window<'_>> {
        self.options().into_iter().flatten()
    }

    fn options(&self) -> [Option<Window<'_>>; 3] {
        [
            self.tumbling.as_ref().map(Window::Tumbling),
            self.sliding.as_ref().map(Window::Sliding),
            self.session.as_ref().map(Window::Session),
        ]
    }

    /// Whether any window option is set (a select job must set none).
    pub fn is_set(&self) -> bool {
        self.set().next().is_some()
    }
}

/// When a window emits partial results before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyFiring {
    EveryEventTime(Duration),
    EveryProcessingTime(Duration),
    EveryElements(u64),
}

impl EarlyFiringSpec {
    /// The one option set, or why there is not one.
    pub fn choice(&self) -> Result<EarlyFiring, OneOfError> {
        pick(
            &["everyEventTime", "everyProcessingTime", "everyElements"],
            self.options(),
        )
    }

    /// Every option set, in the spec's order (validation checks each, also
    /// when more than one is set).
    pub fn set(&self) -> impl Iterator<Item = EarlyFiring> {
        self.options().into_iter().flatten()
    }

    fn options(&self) -> [Option<EarlyFiring>; 3] {
        [
            self.every_event_time.map(EarlyFiring::EveryEventTime),
            self.every_processing_time
                .map(EarlyFiring::EveryProcessingTime),
            self.every_elements.map(EarlyFiring::EveryElements),
        ]
    }
}

/// Where a lookup table's changelog is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Changelog<'a> {
    File(&'a FileSourceSpec),
    Kafka(&'a KafkaSourceSpec),
}

impl ChangelogSpec {
    /// The one option set, or why there is not one.
    pub fn choice(&self) -> Result<Changelog<'_>, OneOfError> {
        pick(&["file", "kafka"], self.options())
    }

    /// Every option set, in the spec's order (validation checks each, also
    /// when more than one is set).
    pub fn set(&self) -> impl Iterator<Item = Changelog<'_>> {
        self.options().into_iter().flatten()
    }

    fn options(&self) -> [Option<Changelog<'_>>; 2] {
        [
            self.file.as_ref().map(Changelog::File),
            self.kafka.as_ref().map(Changelog::Kafka),
        ]
    }
}

/// How a failed job is restarted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RestartStrategy<'a> {
    FixedDelay(&'a FixedDelaySpec),
    ExponentialBackoff(&'a ExponentialBackoffSpec),
}

impl RestartStrategySpec {
    /// The one option set, or why there is not one.
    pub fn choice(&self) -> Result<RestartStrategy<'_>, OneOfError> {
        pick(&["fixedDelay", "exponentialBackoff"], self.options())
    }

    /// Every option set, in the spec's order (validation checks each, also
    /// when more than one is set).
    pub fn set(&self) -> impl Iterator<Item = RestartStrategy<'_>> {
        self.options().into_iter().flatten()
    }

    fn options(&self) -> [Option<RestartStrategy<'_>>; 2] {
        [
            self.fixed_delay.as_ref().map(RestartStrategy::FixedDelay),
            self.exponential_backoff
                .as_ref()
                .map(RestartStrategy::ExponentialBackoff),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_option_set_is_the_choice() {
        let sink = SinkSpec::discard();
        assert_eq!(sink.choice(), Ok(Sink::Discard));
    }

    #[test]
    fn none_or_two_set_name_the_options() {
        let none = SourceSpec::default();
        assert_eq!(
            none.choice().unwrap_err().to_string(),
            "set one of file, generator, kafka"
        );
        let two = SourceSpec {
            file: Some(FileSourceSpec::default()),
            kafka: Some(KafkaSourceSpec::default()),
            ..Default::default()
        };
        assert_eq!(
            two.choice().unwrap_err().to_string(),
            "set only one of file, generator, kafka, got file and kafka"
        );
        assert!(!WindowSpec::default().is_set());
    }
}
