//! JSON-lines files: a bounded source whose partitions are files
//! ([`FileSplit`]), and the exactly-once file sink ([`TransactionalFile`]).
//! (The plain file writer of local runs is in `plain`.)

mod read_ahead;
mod sink;
mod source;

pub use sink::TransactionalFile;
pub use source::FileSplit;
