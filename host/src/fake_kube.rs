//! A small fake Kubernetes API on loopback: just what policy-server needs to answer this
//! policy's Namespace lookups (plain JSON over HTTP, no TLS, any token accepted).
//!
//! - `GET /version`, `/api`, `/api/v1`, `/apis`: discovery;
//! - `GET /api/v1/namespaces`: the list (a `watch=true` request gets an empty stream);
//! - `GET /api/v1/namespaces/NAME`: the Namespace, a 404 `Status`, or the error set for it.
//!
//! Namespaces can be replaced while it runs ([`FakeKube::set_namespace`]), like a relabel.
//! It serves from one thread per connection and stops when dropped.

use anyhow::{anyhow, Context as _};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::session::{Answer, CallbackRequest, Session};

/// What the fake API holds.
#[derive(Debug, Default)]
struct State {
    namespaces: BTreeMap<String, Value>,
    /// name -> (HTTP code, message): the lookup fails like an RBAC refusal.
    errors: BTreeMap<String, (u16, String)>,
    /// `GET /api/v1/namespaces/NAME` served, by name.
    gets: BTreeMap<String, u64>,
}

/// A running fake API server; stops when dropped.
pub struct FakeKube {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKube {
    /// Listen on `127.0.0.1:port` (0: any free port).
    pub fn start(port: u16) -> anyhow::Result<FakeKube> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let thread = {
            let (state, stop, requests) = (state.clone(), stop.clone(), requests.clone());
            std::thread::Builder::new()
                .name("fake-kube".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let (state, requests) = (state.clone(), requests.clone());
                        let _ = std::thread::Builder::new()
                            .name("fake-kube-conn".into())
                            .spawn(move || serve(stream, &state, &requests));
                    }
                })?
        };
        Ok(FakeKube {
            addr,
            state,
            stop,
            requests,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add or replace a Namespace (named by its `metadata.name`); clears an error set for it.
    pub fn set_namespace(&self, namespace: Value) -> anyhow::Result<()> {
        let name = namespace
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| anyhow!("a Namespace without metadata.name: {namespace}"))?
            .to_string();
        let mut state = lock(&self.state);
        state.errors.remove(&name);
        state.namespaces.insert(name, namespace);
        Ok(())
    }

    /// Make lookups of `name` fail with `code` (403: forbidden) and `message`.
    pub fn set_error(&self, name: &str, code: u16, message: &str) {
        let mut state = lock(&self.state);
        state.namespaces.remove(name);
        state.errors.insert(name.into(), (code, message.into()));
    }

    /// Serve what a kwctl session answers: each Namespace lookup's Success payload, or its
    /// Error message as a 403.
    pub fn load_session(&self, session: &Session) -> anyhow::Result<()> {
        for (request, answer) in session.exchanges() {
            let CallbackRequest::KubernetesGetResource { kind, name, .. } = request;
            if kind != "Namespace" {
                continue;
            }
            match answer {
                Answer::Success(namespace) => self.set_namespace(namespace.clone())?,
                Answer::Error(message) => self.set_error(name, 403, message),
            }
        }
        Ok(())
    }

    /// How many times `GET /api/v1/namespaces/NAME` was served.
    pub fn gets(&self, name: &str) -> u64 {
        lock(&self.state).gets.get(name).copied().unwrap_or(0)
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// A kubeconfig pointing at this server (any token), written to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<PathBuf> {
        let text = kubeconfig(&self.url());
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path.to_path_buf())
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A kubeconfig for `server` with a dummy token.
pub fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         users:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    \
         cluster: fake\n    user: fake\ncurrent-context: fake\n"
    )
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serve requests on one connection until the client closes it or goes quiet.
fn serve(stream: TcpStream, state: &Mutex<State>, requests: &AtomicU64) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    // Bounded: a connection serves at most this many requests.
    for _ in 0..10_000 {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length.min(1 << 20)];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let (code, body, close) = route(method, target, state);
        let reason = match code {
            200 => "OK",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Error",
        };
        let response = format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> String {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

/// The answer to one request: (code, JSON body, close the connection).
fn route(method: &str, target: &str, state: &Mutex<State>) -> (u16, String, bool) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" {
        return (
            405,
            status(405, "MethodNotAllowed", "the fake API only serves GET"),
            false,
        );
    }
    match path.trim_end_matches('/') {
        "/version" => (
            200,
            json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"})
                .to_string(),
            false,
        ),
        "/api" => (
            200,
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
            .to_string(),
            false,
        ),
        "/apis" => (
            200,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}).to_string(),
            false,
        ),
        "/api/v1" => (
            200,
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [{
                "name": "namespaces", "singularName": "namespace", "namespaced": false,
                "kind": "Namespace", "verbs": ["get", "list", "watch"], "shortNames": ["ns"]}]})
            .to_string(),
            false,
        ),
        "/api/v1/namespaces" => {
            if query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1") {
                // No events: an empty stream the client reopens later.
                return (200, String::new(), true);
            }
            let items: Vec<Value> = lock(state).namespaces.values().cloned().collect();
            (
                200,
                json!({"kind": "NamespaceList", "apiVersion": "v1",
                       "metadata": {"resourceVersion": "1"}, "items": items})
                .to_string(),
                false,
            )
        }
        other => match other.strip_prefix("/api/v1/namespaces/") {
            Some(name) if !name.is_empty() && !name.contains('/') => {
                let mut state = lock(state);
                *state.gets.entry(name.to_string()).or_default() += 1;
                if let Some(ns) = state.namespaces.get(name) {
                    (200, ns.to_string(), false)
                } else if let Some((code, message)) = state.errors.get(name) {
                    (*code, status(*code, "Forbidden", message), false)
                } else {
                    (
                        404,
                        status(404, "NotFound", &format!("namespaces \"{name}\" not found")),
                        false,
                    )
                }
            }
            _ => (
                404,
                status(404, "NotFound", &format!("the fake API does not serve {path}")),
                false,
            ),
        },
    }
}

/// Arguments of `revinject fake-kube`.
#[derive(clap::Args, Debug, Clone)]
pub struct FakeKubeArgs {
    /// Port on 127.0.0.1 (0: any free port, printed at start).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// A kwctl host-capabilities session whose Namespace answers to serve (repeatable; later
    /// files replace earlier namespaces of the same name).
    #[arg(long = "session", value_name = "SESSION.yml")]
    pub sessions: Vec<PathBuf>,
    /// A v1 Namespace JSON file to serve (repeatable).
    #[arg(long = "namespace", value_name = "NAMESPACE.json")]
    pub namespaces: Vec<PathBuf>,
    /// Write a kubeconfig pointing at the server here.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// `revinject fake-kube`: serve until killed.
pub fn run(args: &FakeKubeArgs) -> anyhow::Result<()> {
    let server = FakeKube::start(args.port)?;
    for path in &args.sessions {
        server.load_session(&Session::load(path)?)?;
    }
    for path in &args.namespaces {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let namespace: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        server.set_namespace(namespace)?;
    }
    if let Some(path) = &args.kubeconfig {
        server.write_kubeconfig(path)?;
        println!("kubeconfig: {}", path.display());
    }
    let names: Vec<String> = lock(&server.state).namespaces.keys().cloned().collect();
    println!(
        "fake Kubernetes API on {} serving namespaces {names:?} (Ctrl-C stops it)",
        server.url()
    );
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        // The server keeps the connection open for more requests: read one response.
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let code = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        reader
            .take(length as u64)
            .read_to_string(&mut text)
            .unwrap();
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    #[test]
    fn serves_namespaces_errors_and_discovery() {
        let kube = FakeKube::start(0).unwrap();
        kube.set_namespace(json!({"metadata": {"name": "shop", "labels": {"istio.io/rev": "a"}}}))
            .unwrap();
        let (code, ns) = get(kube.addr(), "/api/v1/namespaces/shop");
        assert_eq!(code, 200);
        assert_eq!(ns["metadata"]["labels"]["istio.io/rev"], "a");
        // Relabel.
        kube.set_namespace(json!({"metadata": {"name": "shop", "labels": {"istio.io/rev": "b"}}}))
            .unwrap();
        assert_eq!(
            get(kube.addr(), "/api/v1/namespaces/shop").1["metadata"]["labels"]["istio.io/rev"],
            "b"
        );
        assert_eq!(kube.gets("shop"), 2);
        let (code, status) = get(kube.addr(), "/api/v1/namespaces/nope");
        assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
        kube.set_error("payments", 403, "namespaces \"payments\" is forbidden");
        let (code, status) = get(kube.addr(), "/api/v1/namespaces/payments");
        assert_eq!(code, 403);
        assert_eq!(status["message"], "namespaces \"payments\" is forbidden");
        assert_eq!(
            get(kube.addr(), "/api/v1/namespaces").1["items"][0]["metadata"]["name"],
            "shop"
        );
        assert_eq!(get(kube.addr(), "/version").1["major"], "1");
        assert_eq!(
            get(kube.addr(), "/api/v1").1["resources"][0]["kind"],
            "Namespace"
        );
        let addr = kube.addr();
        drop(kube);
        // Stopped: nothing accepts any more (or the connection is closed at once).
        let refused = match TcpStream::connect(addr) {
            Err(_) => true,
            Ok(mut s) => {
                let _ = write!(s, "GET /version HTTP/1.1\r\n\r\n");
                let mut buf = String::new();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.read_to_string(&mut buf)
                    .map(|_| buf.is_empty())
                    .unwrap_or(true)
            }
        };
        assert!(refused);
    }

    #[test]
    fn kubeconfig_names_the_server() {
        let text = kubeconfig("http://127.0.0.1:1234");
        let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"].as_str(),
            Some("http://127.0.0.1:1234")
        );
        assert_eq!(doc["current-context"].as_str(), Some("fake"));
    }
}
