//! The dashboard (`GET /` on the control port) in a real headless browser:
//! Debian's Chromium (installed by scripts/deps.sh), driven over the
//! DevTools protocol. It loads the page of a running job, waits for a
//! completed checkpoint in the table, is refused a savepoint without the
//! job's token, takes one with it and sees it complete, and saves a
//! screenshot (`STREAMJOB_DASHBOARD_SCREENSHOT`, else in the test's folder).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

const TOKEN: &str = "0123456789abcdef-dashboard-token";

/// A process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A paced, endless job with checkpoints every 300 ms, and `more` lines.
fn job_yaml(more: &str) -> String {
    "name: watched\nparallelism: 2\n\
     source: {generator: {keys: 100, rate: 20000}}\n\
     key: key\nwindow: {tumbling: {size: 1s}}\n\
     aggregates: [{name: n, function: count}]\nsink: {discard: {}}\n\
     checkpoints: {interval: 300ms, storage: file://ckpt}\n"
        .to_string()
        + more
}

/// Starts `yaml` with the control API and a token, and `env` set; returns
/// the process and its control API's address.
fn start_job(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> (Killed, String) {
    let job = dir.join("job.yaml");
    std::fs::write(&job, yaml).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamjob"))
        .arg("run")
        .arg(&job)
        .args(["--control-address", "127.0.0.1:0", "--control-token-file"])
        .arg(&token)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the job printed its control address")
            .unwrap();
        if let Some(address) = line.strip_prefix("streamjob: control API on http://") {
            break address.trim().to_string();
        }
    };
    // Keep draining its log, so that the job never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), address)
}

/// Debian's Chromium, headless, showing `url`; returns the process and
/// its DevTools port.
fn start_browser(dir: &Path, url: &str) -> (Killed, u16) {
    let profile = dir.join("chromium");
    let child = Command::new("chromium")
        .args([
            "--headless=new",
            // Tests run as root in CI, where Chromium's sandbox cannot.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1280,900",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed by scripts/deps.sh (apt-get install chromium)");
    let child = Killed(child);
    // Chromium writes the port it chose into its profile.
    let port_file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let text = std::fs::read_to_string(&port_file).unwrap_or_default();
        if let Some(port) = text.lines().next().and_then(|l| l.parse().ok()) {
            break port;
        }
        assert!(Instant::now() < deadline, "chromium did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    (child, port)
}

/// `GET` over plain HTTP/1.1; the body, as long as its `Content-Length`
/// says (Chromium's DevTools server keeps the connection open).
fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// One page of the browser, over the DevTools protocol.
struct Page {
    socket: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
}

impl Page {
    /// The browser's page (the one it opened at the start).
    fn attach(port: u16) -> Page {
        let address = format!("127.0.0.1:{port}");
        let targets: Value = serde_json::from_str(&http_get(&address, "/json/list")).unwrap();
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let stream = TcpStream::connect(&address).unwrap();
        let (socket, _) = tungstenite::client(url.as_str(), stream).unwrap();
        Page { socket, next_id: 1 }
    }

    /// Calls `method` and returns its result (events in between are
    /// skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(tungstenite::Message::text(request.to_string()))
            .unwrap();
        loop {
            let message = self.socket.read().unwrap();
            let Ok(text) = message.to_text() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text).unwrap();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page, `limit` at most.
    fn wait_for(&mut self, expression: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.eval(expression) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for `{expression}`; the page shows:\n{}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&mut self, id: &str) -> String {
        let value = self.eval(&format!("document.getElementById('{id}').textContent"));
        value.as_str().unwrap_or_default().to_string()
    }
}

fn screenshot_path(dir: &Path) -> PathBuf {
    match std::env::var_os("STREAMJOB_DASHBOARD_SCREENSHOT") {
        Some(path) => PathBuf::from(path),
        None => dir.join("dashboard.png"),
    }
}

#[test]
fn the_dashboard_shows_checkpoints_and_takes_a_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let (_job, address) = start_job(dir.path(), &job_yaml(""), &[]);
    let (_browser, port) = start_browser(dir.path(), &format!("http://{address}/"));
    let mut page = Page::attach(port);

    // The page of a running job, with a completed checkpoint in its table.
    page.wait_for(
        "document.querySelectorAll('#checkpoints tr').length > 0",
        Duration::from_secs(30),
    );
    assert_eq!(page.text("job"), "watched");
    assert_eq!(page.text("state"), "running");
    let shape = page.text("shape");
    assert!(shape.starts_with("parallelism 2 · up "), "{shape}");
    assert!(shape.ends_with(" · started without a snapshot"), "{shape}");
    let first = page.eval("document.querySelector('#checkpoints tr td:nth-child(2)').textContent");
    assert_eq!(first, "checkpoint");
    // Its phases: alignment / sync / upload / commit, in milliseconds.
    let phases = page.eval("document.querySelector('#checkpoints tr td:nth-child(5)').textContent");
    let phases: Vec<u64> = phases
        .as_str()
        .unwrap()
        .split(" / ")
        .map(|ms| ms.parse().unwrap())
        .collect();
    assert_eq!(phases.len(), 4, "{phases:?}");
    // Both workers' time, each with its generator partition, once they
    // have reported their first second.
    page.wait_for(
        "document.querySelectorAll('#workers tr').length === 2 && \
         document.querySelectorAll('#partitions tr').length === 2",
        Duration::from_secs(10),
    );
    let worker =
        page.eval("[...document.querySelectorAll('#workers tr')[1].cells].map(c => c.textContent)");
    let cells: Vec<&str> = worker
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cells[0], "1", "{cells:?}");
    let share = |cell: &str| cell.trim_end_matches('%').parse::<u32>().unwrap();
    let shares = share(cells[2]) + share(cells[3]) + share(cells[4]);
    assert!(
        (98..=102).contains(&shares),
        "busy + idle + blocked: {cells:?}"
    );
    // 20,000 records a second leave the workers mostly waiting.
    assert!(share(cells[3]) > 50, "{cells:?}");
    assert!(
        cells[5].starts_with("read ") && cells[5].contains(" · window "),
        "the busy time by stage: {cells:?}"
    );
    let bar = page
        .eval("document.querySelectorAll('#workers tr')[1].querySelectorAll('.bar span').length");
    assert_eq!(bar, 5);
    let partition = page
        .eval("[...document.querySelectorAll('#partitions tr')[0].cells].map(c => c.textContent)");
    assert_eq!(partition[1], "0", "{partition}");
    assert_eq!(partition[2], "active", "{partition}");
    page.wait_for(
        "document.getElementById('in-rate').textContent !== '–'",
        Duration::from_secs(10),
    );

    // Without the job's token, the savepoint is refused.
    page.eval("document.getElementById('savepoint').click()");
    page.wait_for(
        "document.getElementById('savepoint-result').textContent.startsWith('refused')",
        Duration::from_secs(10),
    );
    assert!(
        page.text("savepoint-result")
            .contains("Authorization: Bearer"),
        "{}",
        page.text("savepoint-result")
    );

    // With it, the savepoint is taken and the page follows it to the end.
    page.eval(&format!(
        "document.getElementById('token').value = '{TOKEN}'; \
         document.getElementById('savepoint').click()"
    ));
    page.wait_for(
        "/^savepoint \\d+ completed/.test(document.getElementById('savepoint-result').textContent)",
        Duration::from_secs(30),
    );
    let result = page.text("savepoint-result");
    let id: u64 = result.split(' ').nth(1).unwrap().parse().unwrap();
    // The control API has it, and the table shows it.
    let checkpoints: Value = serde_json::from_str(&http_get(&address, "/checkpoints")).unwrap();
    let savepoint = checkpoints
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("savepoint {id} not in {checkpoints}"));
    assert_eq!(savepoint["kind"], "savepoint");
    assert!(
        result.ends_with(savepoint["path"].as_str().unwrap()),
        "{result}"
    );
    page.wait_for(
        &format!(
            "[...document.querySelectorAll('#checkpoints tr')].some(r => \
             r.cells[0].textContent === '{id}' && r.cells[1].textContent === 'savepoint')"
        ),
        Duration::from_secs(10),
    );

    // The chart draws both rates from a few seconds of samples on.
    page.wait_for(
        "document.getElementById('line').getAttribute('points').split(' ').length >= 5 && \
         document.getElementById('line-out').getAttribute('points').split(' ').length >= 5",
        Duration::from_secs(15),
    );
    // The whole page, not only what fits the window.
    let size = page.call("Page.getLayoutMetrics", json!({}))["cssContentSize"].clone();
    let clip =
        json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
    let shot = page.call(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(screenshot_path(dir.path()), png).unwrap();
}

/// A job that fails and waits to restart: the page says so, and why; once
/// its process is gone, the page keeps what it last said.
#[test]
fn the_dashboard_of_a_failed_job_shows_why() {
    let dir = tempfile::tempdir().unwrap();
    // Worker 0 fails at checkpoint 3 as a failing connector would; the
    // restart waits a minute, long enough to look.
    let yaml = job_yaml("restartStrategy: {fixedDelay: {attempts: 1, delay: 60s}}\n");
    let failpoint = [("STREAMJOB_FAILPOINT", "worker-error:3")];
    let (mut job, address) = start_job(dir.path(), &yaml, &failpoint);
    let (_browser, port) = start_browser(dir.path(), &format!("http://{address}/"));
    let mut page = Page::attach(port);

    page.wait_for(
        "document.getElementById('state').textContent === 'restarting'",
        Duration::from_secs(30),
    );
    let why = "failpoint worker-error:3 reached";
    let error = page.text("error");
    assert!(
        error.starts_with("Error: ") && error.contains(why),
        "{error}"
    );
    page.wait_for(
        "document.querySelectorAll('#restart-list tr td.why').length === 1",
        Duration::from_secs(5),
    );
    let restart = page.eval("document.querySelector('#restart-list td.why').textContent");
    assert!(restart.as_str().unwrap().contains(why), "{restart}");
    assert_eq!(page.text("restarts"), "1");
    // The checkpoint the failure stopped is listed as failed, or was never
    // acknowledged: either way no completed checkpoint 3.
    let completed = page
        .eval("[...document.querySelectorAll('#checkpoints tr')].map(r => r.cells[0].textContent)");
    assert!(
        !completed.as_array().unwrap().iter().any(|id| id == "3"),
        "{completed}"
    );

    // The process ends (a pod replaced): the page keeps the last word.
    job.0.kill().unwrap();
    job.0.wait().unwrap();
    page.wait_for(
        "document.getElementById('state').textContent === 'unreachable'",
        Duration::from_secs(10),
    );
    let error = page.text("error");
    assert!(
        error.starts_with("The job's control API does not answer. It last said: restarting: ")
            && error.contains(why),
        "{error}"
    );
}
