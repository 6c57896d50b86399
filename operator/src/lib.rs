//! The Streamjob Kubernetes operator. It reconciles `StreamJob` resources
//! into runtime pods; the controller comes with the operator issue. The job's
//! pipeline is the runtime's spec type, so the two cannot disagree.

pub use streamjob_runtime::spec::JobSpec as PipelineSpec;
