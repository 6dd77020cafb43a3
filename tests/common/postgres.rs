//! A throwaway PostgreSQL for tests: `initdb` into a temporary directory, the server on a free
//! loopback port, stopped (and its files removed) on drop.
//!
//! PostgreSQL refuses to run as root; when the tests do, every PostgreSQL command runs as the
//! `postgres` user (`runuser`), with the directory handed to it. Without PostgreSQL installed
//! the tests are skipped with a loud message, except under CI (`CI` set), where they fail:
//! `.ci/run` installs it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Postgres {
    /// Removed on drop, after the server stopped.
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres_user: bool,
    running: bool,
}

impl Postgres {
    /// A fresh cluster, started; `None` (after saying so) when PostgreSQL is not installed
    /// and this is not CI.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = find_bin() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or \
                     PG_BIN) but CI is set: .ci/run must install the postgresql package"
                );
            }
            eprintln!(
                "\n!!! SKIPPED: PostgreSQL is not installed (apt-get install postgresql, or set \
                 PG_BIN to its bin directory); the PostgreSQL tests did NOT run !!!\n"
            );
            return None;
        };
        // SAFETY: geteuid(2) has no preconditions.
        let as_postgres_user = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("warmline-pg-")
            .tempdir()
            .expect("a temporary directory");
        if as_postgres_user {
            chown_to_postgres(dir.path());
        }
        let mut pg = Postgres {
            dir,
            bin,
            port: 0,
            as_postgres_user,
            running: false,
        };
        let data = pg.data_dir();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        pg.port = free_port();
        pg.start_server();
        Some(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of database `postgres` (owner: the `postgres` superuser).
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL: one per test case keeps cases apart.
    pub fn create_db(&self, name: &str) -> String {
        Postgres::exec(&self.url(), &format!("CREATE DATABASE \"{name}\""));
        self.url_of(name)
    }

    /// Runs one SQL batch against `url`, on a thread of its own: the sync client must not
    /// run inside an async runtime.
    pub fn exec(url: &str, sql: &str) {
        let (url, sql) = (url.to_string(), sql.to_string());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            c.batch_execute(&sql).expect("sql");
        })
        .join()
        .unwrap();
    }

    /// Starts the server on `self.port` and waits until it accepts connections.
    pub fn start_server(&mut self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "postgres did not start: {}\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "postgres port never opened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once, as a crash or a pulled cable would (connections break).
    pub fn stop_server(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        if !out.status.success() {
            eprintln!("pg_ctl stop: {}", text(&out));
        }
        self.running = false;
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// `PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` that has `initdb`.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn chown_to_postgres(path: &Path) {
    let out = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(path)
        .output()
        .expect("chown");
    assert!(out.status.success(), "chown: {}", text(&out));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
