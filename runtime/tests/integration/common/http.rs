//! Plain HTTP/1.1 requests to a job's control API, one connection each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP/1.1 request with a JSON body (or none); returns the status
/// code and the body.
pub fn http(address: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_as(
        address,
        method,
        path,
        "application/json",
        body.unwrap_or(""),
    )
}

/// One HTTP/1.1 request with a body of `content_type`.
pub fn http_as(
    address: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    http_raw(
        address,
        method,
        path,
        &format!("Content-Type: {content_type}\r\n"),
        body,
    )
}

/// One HTTP/1.1 request with a JSON body and `Authorization: Bearer <token>`.
pub fn http_with_token(
    address: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let headers = format!("Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n");
    http_raw(address, method, path, &headers, body)
}

/// One HTTP/1.1 request with `headers` (each line ending in CRLF).
pub fn http_raw(
    address: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
