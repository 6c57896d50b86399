//! The checkpoint storage URI of a job, parsed once for validation (here)
//! and for opening the storage (in `streamjob-storage`).

/// A storage URI, parsed once for validation and for opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageUri<'a> {
    /// A folder (relative paths are resolved against the job file's).
    File(&'a str),
    /// A bucket and a key prefix (possibly empty).
    S3 { bucket: &'a str, prefix: &'a str },
}

impl<'a> StorageUri<'a> {
    /// Parses `file://dir` or `s3://bucket[/prefix]`; the error says what
    /// would be accepted.
    pub fn parse(uri: &'a str) -> Result<Self, String> {
        let expected =
            || format!("expected file:///path/to/dir or s3://bucket/prefix, got {uri:?}");
        match uri.split_once("://") {
            Some(("file", path)) if !path.is_empty() => Ok(StorageUri::File(path)),
            Some(("s3", rest)) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!("{}: the bucket is missing", expected()));
                }
                Ok(StorageUri::S3 {
                    bucket,
                    prefix: prefix.trim_matches('/'),
                })
            }
            Some(("s3a" | "s3n" | "s3p", _)) => Err(format!(
                "{}; Hadoop's s3a://, s3n:// and Flink's s3p:// are spelled s3:// here",
                expected()
            )),
            _ => Err(expected()),
        }
    }
}
