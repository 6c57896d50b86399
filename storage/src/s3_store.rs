//! `s3://bucket/prefix` storage through aws-sdk-s3. Settings come from the
//! standard AWS environment: credentials (`AWS_ACCESS_KEY_ID`, a profile,
//! web identity on Kubernetes, …), `AWS_REGION` (default `us-east-1`),
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` for S3-compatible servers.
//! Path-style addressing (`http://host/bucket/key`) is used when an endpoint
//! is set, as S3-compatible servers expect, unless `AWS_S3_FORCE_PATH_STYLE`
//! says otherwise.
//!
//! The engine's threads are not async: the store owns a small tokio runtime
//! and blocks on each request.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use crate::store::ObjectStore;
use crate::StorageError;

/// Objects larger than this go up in parts (RocksDB's SST files are 64 MiB
/// by default; savepoints of large state are bigger).
const MULTIPART_THRESHOLD: usize = 16 << 20;
/// S3 requires parts of at least 5 MiB (all but the last).
const PART_SIZE: usize = 8 << 20;

pub struct S3Store {
    client: Client,
    bucket: String,
    /// Key prefix of the store's root, empty or ending in `/`.
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store(s3://{}/{})", self.bucket, self.prefix)
    }
}

fn env_flag(name: &str) -> Option<bool> {
    std::env::var(name)
        .ok()
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

impl S3Store {
    /// Opens `s3://bucket/prefix`.
    pub fn open(bucket: &str, prefix: &str) -> Result<Self, StorageError> {
        let uri = format!("s3://{bucket}/{prefix}");
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Uri {
                uri: uri.clone(),
                reason: format!("cannot start the S3 client's runtime: {e}"),
            })?;
        let endpoint_set = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()));
        let path_style = env_flag("AWS_S3_FORCE_PATH_STYLE").unwrap_or(endpoint_set);
        let shared = runtime.block_on(async {
            // The usual chain (environment, profile, instance metadata),
            // then us-east-1.
            let region = aws_config::meta::region::RegionProviderChain::default_provider()
                .or_else(aws_sdk_s3::config::Region::new("us-east-1"));
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(region)
                .load()
                .await
        });
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .build();
        Ok(S3Store {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            prefix,
            runtime,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Uploads a large object in parts: one PUT is limited to 5 GiB, and a
    /// failed part is retried alone. An upload that fails is aborted, so
    /// that no parts linger (and are billed) in the bucket.
    fn put_multipart(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let full = self.key(key);
        let created = self.runtime.block_on(
            self.client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .send(),
        );
        let created = created.map_err(|e| self.error(key, "create multipart upload", e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let parts = self.runtime.block_on(async {
            let mut parts = Vec::new();
            for (i, chunk) in bytes.chunks(PART_SIZE).enumerate() {
                let number = i as i32 + 1;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| self.error(key, "upload part", e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.error(key, "complete multipart upload", e))?;
            Ok(())
        });
        if parts.is_err() {
            let _ = self.runtime.block_on(
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .send(),
            );
        }
        parts
    }

    fn error(&self, key: &str, what: &str, e: impl std::error::Error) -> StorageError {
        StorageError::S3 {
            location: self.location(key),
            reason: format!("{what}: {}", DisplayErrorContext(e)),
        }
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, bytes);
        }
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(ByteStream::from(bytes.to_vec()));
        self.runtime
            .block_on(request.send())
            .map_err(|e| self.error(key, "put", e))?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key));
        self.runtime.block_on(async {
            let output = match request.send().await {
                Ok(o) => o,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                    return Ok(None)
                }
                Err(e) => return Err(self.error(key, "get", e)),
            };
            let bytes = output
                .body
                .collect()
                .await
                .map_err(|e| self.error(key, "get", e))?;
            Ok(Some(bytes.into_bytes().to_vec()))
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let full = self.key(prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.error(prefix, "list", e))?;
                for object in page.contents() {
                    if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                        keys.push(key.to_string());
                    }
                }
            }
            Ok(keys)
        })
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let request = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key));
        self.runtime
            .block_on(request.send())
            .map_err(|e| self.error(key, "delete", e))?;
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        let keys = self.list(prefix)?;
        // DeleteObjects takes at most 1000 keys.
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.key(k)).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.error(prefix, "delete", e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| self.error(prefix, "delete", e))?;
            let request = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete);
            self.runtime
                .block_on(request.send())
                .map_err(|e| self.error(prefix, "delete", e))?;
        }
        Ok(())
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(key))
            .trim_end_matches('/')
            .to_string()
    }
}
