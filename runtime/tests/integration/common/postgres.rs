//! A real PostgreSQL server on 127.0.0.1 for the tests: PostgreSQL 15's
//! `initdb` and `pg_ctl` (Debian's postgresql-15, installed by
//! scripts/deps.sh), a fresh cluster per test in a temporary folder, stopped
//! when dropped. PostgreSQL refuses to run as root, so as root the server
//! runs as the `postgres` user the package creates.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Where PostgreSQL's programs are: `$STREAMJOB_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STREAMJOB_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed by scripts/deps.sh (apt-get install postgresql-15)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgServer {
    /// Starts a new cluster; the user `streamjob` may do anything (trust).
    pub fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let server = PgServer {
            bin: bin_dir(),
            port: super::free_port(),
            dir,
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster's folder to postgres");
        }
        let data = server.dir.path().join("data");
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "streamjob",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            server.port,
            server.dir.path().display()
        );
        let log = server.dir.path().join("log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        server
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let output = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The connection string of the `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=streamjob dbname=postgres",
            self.port
        )
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let data = data.to_str().unwrap().to_string();
        let bin = self.bin.join("pg_ctl");
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

impl PgServer {
    /// `SELECT` as text rows, columns joined with `|`.
    pub fn rows(&self, sql: &str) -> Vec<String> {
        self.client()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.get::<_, Option<String>>(i)
                            .unwrap_or_else(|| "NULL".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    /// Table `windows` of the kill tests holds each of `expected`'s final
    /// windows exactly once, with its values.
    pub fn check_window_rows(&self, expected: &super::Windows) {
        let rows = self.rows(
            "SELECT k, (extract(epoch FROM window_start) * 1000)::bigint::text, n::bigint::text, \
             s::bigint::text FROM windows WHERE NOT partial",
        );
        let mut seen = std::collections::BTreeSet::new();
        for row in &rows {
            let parts: Vec<&str> = row.split('|').collect();
            let window = (parts[0].to_string(), parts[1].parse::<i64>().unwrap());
            let got = (
                parts[2].parse::<u64>().unwrap(),
                parts[3].parse::<i64>().unwrap(),
            );
            assert_eq!(Some(&got), expected.get(&window), "window {window:?}");
            assert!(
                seen.insert(window.clone()),
                "window {window:?} inserted twice"
            );
        }
        assert_eq!(seen.len(), expected.len(), "windows missing");
    }
}
