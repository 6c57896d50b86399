//! The Streamjob Kubernetes operator: it reconciles `StreamJob` resources
//! into runtime pods, rolls spec changes out through savepoints and brings
//! failed jobs back from their latest checkpoint.

pub mod controller;
pub mod crd;
pub mod lifecycle;
pub mod metrics;
pub mod render;
pub mod resources;
pub mod runtime_api;

pub use crd::{StreamJob, StreamJobSpec, StreamJobStatus};
pub use streamjob_spec::JobSpec as PipelineSpec;
