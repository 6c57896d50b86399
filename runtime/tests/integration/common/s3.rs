//! A real S3-protocol server on 127.0.0.1 for the tests: moto's server
//! (`pip install 'moto[server]'`, done by scripts/deps.sh), one per test,
//! stopped when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

/// One plain HTTP request; returns the status line.
fn http(port: u16, request_line: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.lines().next().unwrap_or_default().to_string())
}

impl S3Server {
    /// Starts the server and creates `buckets`.
    pub fn start(buckets: &[&str]) -> S3Server {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is installed by scripts/deps.sh (pip install 'moto[server]')");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while http(port, "GET /").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for bucket in buckets {
            let status = http(port, &format!("PUT /{bucket}")).unwrap();
            assert!(status.contains("200"), "create bucket {bucket}: {status}");
        }
        server
    }

    /// The AWS environment that points a client at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
    }

    /// Points this process's AWS clients at the server (each test runs in
    /// its own process under nextest).
    pub fn set_env(&self) {
        for (k, v) in self.env() {
            std::env::set_var(k, v);
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
