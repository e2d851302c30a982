//! Real etcd servers for tests: one member or a three-member cluster on free loopback ports, in a
//! temporary directory that is removed with it. Every process is killed on drop, also when a test
//! panics, and carries PR_SET_PDEATHSIG so it dies with the test thread if the test process is killed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, spawn_with_deathsig, wait_for};

/// The etcd binary: `$ETCD_BIN`, else `etcd` on PATH. Panics with install instructions when missing.
pub fn etcd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(p);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("etcd");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "etcd not found: these tests run a real etcd server. Install it with \
         `apt-get install etcd-server` (Debian/Ubuntu) or set ETCD_BIN=/path/to/etcd; \
         `scripts/test` installs it for you when run as root."
    );
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    /// Plain-HTTP /health and /metrics, also when clients need TLS.
    pub metrics_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// How to start the members beyond the defaults.
#[derive(Default, Clone)]
pub struct Options {
    /// Serve clients over TLS with these PEM files (server cert, server key, client CA).
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

pub struct EtcdCluster {
    pub members: Vec<Member>,
    options: Options,
    /// Appended to every member's command line (see [`EtcdCluster::start_with_args`]).
    extra_args: Vec<String>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// One member.
    pub fn single() -> Self {
        Self::start(1)
    }

    /// `n` members (3 for a real quorum).
    pub fn start(n: usize) -> Self {
        Self::start_with(n, Options::default())
    }

    /// `n` members with `options`.
    pub fn start_with(n: usize, options: Options) -> Self {
        Self::start_with_args(n, options, &[])
    }

    /// `n` members with `options`, and `extra_args` appended to each member's command line (e.g.
    /// `--auth-token-ttl 2`).
    pub fn start_with_args(n: usize, options: Options, extra_args: &[&str]) -> Self {
        let bin = etcd_bin();
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        assert!(bin.exists(), "ETCD_BIN={} does not exist", bin.display());
        let dir = tempfile::Builder::new()
            .prefix("singleton-exec-etcd-")
            .tempdir()
            .expect("temp dir");
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let name = format!("m{i}");
                Member {
                    client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                    metrics_url: format!("http://127.0.0.1:{}", free_port()),
                    peer_url: format!("http://127.0.0.1:{}", free_port()),
                    data_dir: dir.path().join(&name),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    child: None,
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("t{}", free_port());
        let mut cluster = EtcdCluster {
            members,
            options,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            initial_cluster,
            token,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let bin = etcd_bin();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log");
        let mut cmd = Command::new(bin);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(&m.client_url)
            .arg("--advertise-client-urls")
            .arg(&m.client_url)
            .arg("--listen-peer-urls")
            .arg(&m.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&m.peer_url)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--heartbeat-interval")
            .arg("100")
            .arg("--election-timeout")
            .arg("1000")
            .arg("--listen-metrics-urls")
            .arg(&m.metrics_url)
            .arg("--logger")
            .arg("zap")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if let Some((cert, key, ca)) = &self.options.tls {
            cmd.arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--client-cert-auth");
        }
        cmd.args(&self.extra_args);
        m.child = Some(spawn_with_deathsig(&mut cmd).expect("start etcd"));
    }

    /// Waits until member `i` answers /health with true.
    pub fn wait_healthy(&self, i: usize) {
        let url = self.members[i].metrics_url.clone();
        let log = self.members[i].log.clone();
        wait_for(
            Duration::from_secs(30),
            || health(&url),
            || {
                format!(
                    "etcd member {i} at {url} not healthy; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            },
        );
    }

    /// All client URLs, comma-separated, as `--endpoints` wants them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The temporary directory holding data and logs; removed on drop.
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url.clone()
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(|c| c.id())
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on the same ports and data, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Starts member `i` again without waiting: a lone member of three cannot be healthy alone.
    pub fn restart_no_wait(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
    }

    /// Freezes member `i` (SIGSTOP).
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// Thaws member `i` (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(pid) = self.pid(i) {
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// The member that is raft leader now, if one answers.
    pub fn leader_index(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && http_get(&self.members[i].metrics_url, "/metrics")
                    .map(|body| body.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
                    .unwrap_or(false)
        })
    }

    /// A client-side read of etcd's own Prometheus metrics on member `i`.
    pub fn metrics(&self, i: usize) -> String {
        http_get(&self.members[i].metrics_url, "/metrics").unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.resume(i);
            self.stop(i);
        }
    }
}

fn health(url: &str) -> bool {
    http_get(url, "/health")
        .map(|b| b.contains("\"health\":\"true\""))
        .unwrap_or(false)
}

/// Runs etcdctl (API v3) against `endpoints`; returns (exit code, stdout + stderr).
pub fn etcdctl(endpoints: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .output()
        .expect("run etcdctl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A tiny HTTP/1.0 GET, enough for etcd's /health and /metrics.
pub fn http_get(url: &str, path: &str) -> Option<String> {
    let host = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}
