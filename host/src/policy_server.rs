//! Kubewarden's real policy-server as a child process on loopback, and a small HTTP/1.1 client
//! to send it AdmissionReviews.
//!
//! [`PolicyServer::start`] writes `policies.yml`, picks free ports, starts the binary with its
//! own download and sigstore cache directories and waits for `/readiness`; dropping the guard
//! kills the process and waits for it, so nothing outlives the command, even when a check
//! fails or panics.

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A policy to load: its id (the URL path `/validate/<id>`) and its `policies.yml` entry.
#[derive(Debug, Clone)]
pub struct PolicyEntry {
    pub id: String,
    pub entry: Value,
}

impl PolicyEntry {
    /// A local module with settings; `context_aware` grants Namespace reads.
    pub fn local(id: &str, module: &Path, settings: &Value, context_aware: bool) -> PolicyEntry {
        let mut entry = json!({
            "module": file_url(module),
            "policyMode": "protect",
            "allowedToMutate": true,
            "settings": settings,
        });
        if context_aware {
            entry["contextAwareResources"] = json!([{"apiVersion": "v1", "kind": "Namespace"}]);
        }
        PolicyEntry {
            id: id.to_string(),
            entry,
        }
    }
}

/// `file:///absolute/path`.
pub fn file_url(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file://{}", absolute.display())
}

/// How to start policy-server.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub binary: &'a Path,
    pub policies: &'a [PolicyEntry],
    /// A kubeconfig for context-aware policies (the fake API's).
    pub kubeconfig: Option<&'a Path>,
    /// Working directory: policies.yml, downloads, sigstore cache, the log.
    pub work_dir: &'a Path,
    /// `--workers` (None: policy-server's default, one per CPU).
    pub workers: Option<u32>,
    /// How long to wait for readiness.
    pub ready_within: Duration,
}

/// A running policy-server; killed when dropped.
pub struct PolicyServer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl PolicyServer {
    /// Start and wait until ready. Another process may take a chosen port between the probe
    /// and policy-server's bind: then the start is retried (three attempts) with new ports.
    pub fn start(launch: &Launch) -> anyhow::Result<PolicyServer> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match PolicyServer::start_once(launch) {
                Ok(server) => return Ok(server),
                Err(e) if attempt < 3 && format!("{e:#}").contains("in use") => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn start_once(launch: &Launch) -> anyhow::Result<PolicyServer> {
        std::fs::create_dir_all(launch.work_dir)
            .with_context(|| format!("cannot create {}", launch.work_dir.display()))?;
        let mut policies = serde_json::Map::new();
        for p in launch.policies {
            policies.insert(p.id.clone(), p.entry.clone());
        }
        let policies_path = launch.work_dir.join("policies.yml");
        std::fs::write(&policies_path, serde_norway::to_string(&policies)?)
            .with_context(|| format!("cannot write {}", policies_path.display()))?;
        let (port, readiness) = (free_port()?, free_port()?);
        if port == readiness {
            bail!("the same free port twice");
        }
        let log = launch.work_dir.join("policy-server.log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(launch.binary);
        command
            .env("RUST_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .arg("--addr")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--readiness-probe-port")
            .arg(readiness.to_string())
            .arg("--policies")
            .arg(&policies_path)
            .arg("--policies-download-dir")
            .arg(launch.work_dir.join("downloads"))
            .arg("--sigstore-cache-dir")
            .arg(launch.work_dir.join("sigstore"))
            .arg("--log-no-color")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        if let Some(workers) = launch.workers {
            command.arg("--workers").arg(workers.to_string());
        }
        match launch.kubeconfig {
            Some(path) => {
                command.env("KUBECONFIG", path);
            }
            None => {
                command
                    .env_remove("KUBECONFIG")
                    .arg("--ignore-kubernetes-connection-failure");
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", launch.binary.display()))?;
        let mut server = PolicyServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        server.wait_ready(readiness, launch.ready_within)?;
        Ok(server)
    }

    fn wait_ready(&mut self, readiness: u16, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let probe = SocketAddr::from(([127, 0, 0, 1], readiness));
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "policy-server exited ({status}) before it was ready:\n{}",
                    self.log_tail(30)
                );
            }
            if let Ok(mut client) = HttpClient::connect(probe) {
                if let Ok((200, _)) = client.request("GET", "/readiness", None) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "policy-server was not ready within {within:?}:\n{}",
            self.log_tail(30)
        )
    }

    /// The address AdmissionReviews go to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of policy-server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Resident set size of the process, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `review` wrapped as an AdmissionReview if it is a bare AdmissionRequest.
pub fn admission_review(request_document: &Value) -> Value {
    if request_document
        .get("request")
        .is_some_and(Value::is_object)
    {
        request_document.clone()
    } else {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request_document,
        })
    }
}

/// A keep-alive HTTP/1.1 connection (what an API server's webhook client keeps open).
pub struct HttpClient {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl HttpClient {
    pub fn connect(addr: SocketAddr) -> anyhow::Result<HttpClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(HttpClient {
            addr,
            reader: BufReader::new(stream),
        })
    }

    /// No answer within `timeout` fails the request (an I/O timeout error).
    pub fn set_timeout(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// `POST /validate/<policy>` with `review`; the status code and the parsed JSON body.
    pub fn validate(&mut self, policy: &str, review: &[u8]) -> anyhow::Result<(u16, Value)> {
        let (code, body) = self.request("POST", &format!("/validate/{policy}"), Some(review))?;
        let value = serde_json::from_slice(&body).with_context(|| {
            format!(
                "policy-server answered {code} with a body that is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        })?;
        Ok((code, value))
    }

    /// One request; reconnects once if the server closed the kept-alive connection.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        match self.request_once(method, path, body) {
            Ok(answer) => Ok(answer),
            Err(_) => {
                *self = HttpClient::connect(self.addr)?;
                self.request_once(method, path, body)
            }
        }
    }

    fn request_once(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if method == "POST" {
            head.push_str("content-type: application/json\r\n");
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;

        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("the connection was closed");
        }
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("not an HTTP status line: {line:?}"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            let mut header = String::new();
            if self.reader.read_line(&mut header)? == 0 {
                bail!("the connection was closed in the headers");
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| anyhow!("bad chunk size {size:?}"))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        } else {
            self.reader.read_to_end(&mut body)?;
            close = true;
        }
        if close {
            *self = HttpClient::connect(self.addr)?;
        }
        Ok((code, body))
    }
}
