//! Runs `policy.wasm` the way Kubewarden's policy-evaluator does: waPC over wasmtime
//! (`wapc` + `wasmtime-provider`), WASI preview1, an epoch deadline per call, the
//! `kubewarden/*` host callbacks, and the AdmissionResponse built by [`crate::patch`].
//!
//! A [`PolicyRuntime`] compiles the module once and reuses one instance across evaluations;
//! after a trap, a timeout or a guest error the instance is thrown away and a fresh one is
//! made for the next call, so one bad request cannot poison the next. It is not `Send`
//! (waPC hosts are not): create one per thread.

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wapc::WapcHost;
use wasmtime_provider::wasmtime;
use wasmtime_provider::{EpochDeadlines, WasmtimeEngineProviderBuilder, WasmtimeEngineProviderPre};

use crate::patch::{AdmissionResponse, ValidationResponse};

/// How often the engine's epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How a [`PolicyRuntime`] runs the policy.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Wall-clock budget of one guest call (policy-server's default is 2 s).
    pub deadline: Duration,
    /// Where wasmtime keeps compiled modules between process runs; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Print the guest's `kubewarden/tracing/log` events on stderr.
    pub guest_logs: bool,
    /// Cap on the guest's linear memory, in bytes (`None`: only wasm's own 4 GiB limit).
    /// Enforced by [`crate::memory`]; an engine with the pooling allocator ignores it.
    pub max_memory: Option<usize>,
}

/// Default cap on linear memory: room for multi-megabyte pods, far below a node's memory.
pub const DEFAULT_MAX_MEMORY: usize = 256 << 20;

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            deadline: Duration::from_secs(2),
            cache_dir: Some(default_cache_dir()),
            guest_logs: true,
            max_memory: Some(DEFAULT_MAX_MEMORY),
        }
    }
}

/// `$REVINJECT_CACHE_DIR`, else `$XDG_CACHE_HOME/revinject`, else `~/.cache/revinject`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REVINJECT_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("revinject");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("revinject"),
        None => std::env::temp_dir().join("revinject-cache"),
    }
}

/// The cluster as the policy sees it through `kubewarden/kubernetes/get_resource`.
pub trait HostCapabilities {
    /// Answer a `get_resource` call. `request` is the guest's payload
    /// (`{"api_version", "kind", "name", "namespace", "disable_cache", ...}`); the answer is the
    /// resource JSON, or an error message the guest receives as the host call's failure.
    fn get_resource(&self, request: &Value) -> Result<Value, String>;

    /// The bytes handed to the guest for a `get_resource` call: [`Self::get_resource`] as JSON.
    /// Fault-injection tests override it to send the guest bytes that are not JSON.
    fn get_resource_bytes(&self, request: &Value) -> Result<Vec<u8>, String> {
        let resource = self.get_resource(request)?;
        serde_json::to_vec(&resource).map_err(|e| format!("cannot encode the resource: {e}"))
    }
}

/// Host capabilities that answer nothing (settings validation, protocol version).
struct NoCluster;

impl HostCapabilities for NoCluster {
    fn get_resource(&self, _request: &Value) -> Result<Value, String> {
        Err("no cluster access is available during this call".to_string())
    }
}

/// Namespaces served from a map (name -> v1 Namespace object), for callers without a session.
#[derive(Debug, Clone, Default)]
pub struct StaticNamespaces(pub BTreeMap<String, Value>);

impl StaticNamespaces {
    /// Build from namespace names and their labels.
    pub fn from_labels<'a>(
        namespaces: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> StaticNamespaces {
        StaticNamespaces(
            namespaces
                .into_iter()
                .map(|(name, labels)| (name.to_string(), namespace_object(name, labels)))
                .collect(),
        )
    }
}

/// A minimal but real-looking v1 Namespace object.
pub fn namespace_object(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut labels = labels.clone();
    labels
        .entry("kubernetes.io/metadata.name".to_string())
        .or_insert_with(|| name.to_string());
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

impl StaticNamespaces {
    /// The Namespace a `get_resource` request names, borrowed.
    fn lookup(&self, request: &Value) -> Result<&Value, String> {
        let field = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind, name) = (field("api_version"), field("kind"), field("name"));
        if api_version != "v1" || kind != "Namespace" {
            return Err(format!(
                "{api_version}/{kind} is not available: only v1/Namespace lookups are served"
            ));
        }
        self.0
            .get(name)
            .ok_or_else(|| format!("namespaces \"{name}\" not found"))
    }
}

impl HostCapabilities for StaticNamespaces {
    fn get_resource(&self, request: &Value) -> Result<Value, String> {
        self.lookup(request).cloned()
    }

    /// Serialized from the stored object, without the copy `get_resource` makes (policy-server
    /// answers from its cache too; the copy was host overhead inside the guest call's time).
    fn get_resource_bytes(&self, request: &Value) -> Result<Vec<u8>, String> {
        let resource = self.lookup(request)?;
        serde_json::to_vec(resource).map_err(|e| format!("cannot encode the resource: {e}"))
    }
}

thread_local! {
    /// The capabilities of the guest call running on this thread (see [`HostScope`]).
    static CURRENT_HOST: Cell<Option<*const (dyn HostCapabilities + 'static)>> =
        const { Cell::new(None) };
}

/// Makes a borrowed [`HostCapabilities`] reachable from the `'static` waPC host callback for
/// the duration of one guest call. waPC fixes the callback when the instance is created, but
/// the capabilities change per evaluation and are only borrowed.
struct HostScope {
    previous: Option<*const (dyn HostCapabilities + 'static)>,
}

impl HostScope {
    fn enter(host: &dyn HostCapabilities) -> HostScope {
        let ptr: *const (dyn HostCapabilities + '_) = host;
        // SAFETY: only the lifetime bound of the trait object changes (same layout). The pointer
        // is dereferenced only by `with_current_host`, on this thread, while this scope is alive;
        // the scope lives on the stack of the call that holds the borrow and is dropped
        // (restoring the previous value) before that borrow ends, even on panic.
        let ptr: *const (dyn HostCapabilities + 'static) = unsafe { std::mem::transmute(ptr) };
        HostScope {
            previous: CURRENT_HOST.with(|c| c.replace(Some(ptr))),
        }
    }
}

impl Drop for HostScope {
    fn drop(&mut self) {
        CURRENT_HOST.with(|c| c.set(self.previous));
    }
}

fn with_current_host<R>(f: impl FnOnce(&dyn HostCapabilities) -> R) -> Option<R> {
    let ptr = CURRENT_HOST.with(Cell::get)?;
    // SAFETY: set by a live `HostScope` on this thread (see `HostScope::enter`).
    Some(f(unsafe { &*ptr }))
}

type HostResult = Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;

/// The waPC host callback: the `kubewarden/*` capabilities this policy may use.
fn host_callback(
    guest_logs: bool,
    binding: &str,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> HostResult {
    match (binding, namespace, operation) {
        ("kubewarden", "kubernetes", "get_resource") => {
            let request: Value = serde_json::from_slice(payload)
                .map_err(|e| format!("cannot decode the get_resource request: {e}"))?;
            let answer = with_current_host(|host| host.get_resource_bytes(&request))
                .ok_or("no host capabilities are attached to this call")?;
            match answer {
                Ok(bytes) => Ok(bytes),
                // The wording policy-evaluator uses for a failed callback.
                Err(e) => Err(format!("Callback evaluation failure: {e}").into()),
            }
        }
        ("kubewarden", "tracing", "log") => {
            if guest_logs {
                eprintln!(
                    "policy log: {}",
                    String::from_utf8_lossy(payload).trim_end()
                );
            }
            Ok(Vec::new())
        }
        _ => Err(format!(
            "host capability {binding}/{namespace}/{operation} is not provided: this host only \
             serves kubewarden/kubernetes/get_resource and kubewarden/tracing/log"
        )
        .into()),
    }
}

/// Why a guest call failed; the instance is discarded after any of these.
#[derive(Debug)]
pub enum GuestFailure {
    /// The epoch deadline interrupted the guest.
    Timeout { deadline: Duration, detail: String },
    /// A wasm trap (panic with `panic = "abort"`, out-of-bounds access, unreachable ...).
    Trap(String),
    /// The guest returned an error from the waPC function.
    Error(String),
    /// A fresh instance could not be created.
    Instantiate(String),
    /// The guest asked for more linear memory than the cap allows (and then failed).
    MemoryExhausted { cap: usize, detail: String },
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestFailure::Timeout { deadline, detail } => {
                write!(f, "the policy timed out after {deadline:?}: {detail}")
            }
            GuestFailure::Trap(m) => write!(f, "the policy trapped: {m}"),
            GuestFailure::Error(m) => write!(f, "the policy returned an error: {m}"),
            GuestFailure::Instantiate(m) => write!(f, "the policy cannot be instantiated: {m}"),
            GuestFailure::MemoryExhausted { cap, detail } => write!(
                f,
                "the policy exhausted its memory cap of {} MiB: {detail}",
                cap >> 20
            ),
        }
    }
}

impl std::error::Error for GuestFailure {}

/// Engines in use and how many runtimes use each: one thread advances every engine's epoch
/// once per [`EPOCH_TICK`], however many runtimes share an engine (so sharing one does not
/// shorten their deadlines).
static TICKED_ENGINES: Mutex<Vec<(wasmtime::Engine, usize)>> = Mutex::new(Vec::new());

/// Whether the ticker thread runs (`Err` with the reason when it could not start).
static TICKER_THREAD: OnceLock<Result<(), String>> = OnceLock::new();

fn ticked_engines() -> std::sync::MutexGuard<'static, Vec<(wasmtime::Engine, usize)>> {
    // A panic elsewhere cannot leave the list half-updated: every update is one push/remove.
    TICKED_ENGINES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps its engine's epoch advancing while alive.
struct EpochTicker {
    engine: wasmtime::Engine,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> anyhow::Result<EpochTicker> {
        TICKER_THREAD
            .get_or_init(|| {
                std::thread::Builder::new()
                    .name("revinject-epoch".into())
                    .spawn(|| loop {
                        std::thread::sleep(EPOCH_TICK);
                        for (engine, _) in ticked_engines().iter() {
                            engine.increment_epoch();
                        }
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| anyhow!("cannot start the epoch ticker thread: {e}"))?;
        let mut engines = ticked_engines();
        match engines
            .iter_mut()
            .find(|(e, _)| wasmtime::Engine::same(e, &engine))
        {
            Some((_, users)) => *users += 1,
            None => engines.push((engine.clone(), 1)),
        }
        Ok(EpochTicker { engine })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let mut engines = ticked_engines();
        if let Some(i) = engines
            .iter()
            .position(|(e, _)| wasmtime::Engine::same(e, &self.engine))
        {
            if let Some((_, users)) = engines.get_mut(i) {
                *users -= 1;
                if *users == 0 {
                    engines.swap_remove(i);
                }
            }
        }
    }
}

/// A loaded policy: compile once, evaluate many times.
pub struct PolicyRuntime {
    pre: WasmtimeEngineProviderPre,
    deadlines: EpochDeadlines,
    options: RuntimeOptions,
    instance: RefCell<Option<WapcHost>>,
    _ticker: EpochTicker,
}

impl PolicyRuntime {
    /// Compile `wasm` (through the module cache when enabled), instantiate it and check it
    /// speaks Kubewarden protocol `v1`.
    pub fn load(wasm: &Path, opts: &RuntimeOptions) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
        Self::from_bytes(&bytes, opts).with_context(|| format!("cannot load {}", wasm.display()))
    }

    /// Like [`PolicyRuntime::load`], from the module's bytes. The compiled module is kept for
    /// the process: loading the same policy again (one runtime per thread, tests) compiles
    /// nothing and shares the engine.
    pub fn from_bytes(bytes: &[u8], opts: &RuntimeOptions) -> anyhow::Result<Self> {
        let (engine, module) = compiled(bytes, opts)?;
        Self::from_module(&engine, module, opts)
    }

    /// Like [`PolicyRuntime::from_bytes`], from a module compiled for `engine` (made with
    /// [`new_engine_with`]): threads share one compilation, and the engine may use the pooling
    /// allocator.
    pub fn from_module(
        engine: &wasmtime::Engine,
        module: wasmtime::Module,
        opts: &RuntimeOptions,
    ) -> anyhow::Result<Self> {
        let engine = engine.clone();
        let ticks = opts
            .deadline
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1);
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        let deadlines = EpochDeadlines {
            wapc_init: ticks,
            wapc_func: ticks,
        };
        let pre = WasmtimeEngineProviderBuilder::new()
            .engine(engine.clone())
            .module(module)
            .enable_epoch_interruptions(deadlines)
            .build_pre()
            .map_err(|e| {
                anyhow!("cannot link the module (it must import only wapc and WASI preview1): {e}")
            })?;
        let runtime = PolicyRuntime {
            pre,
            deadlines,
            options: opts.clone(),
            instance: RefCell::new(None),
            _ticker: EpochTicker::start(engine)?,
        };
        let version = runtime.protocol_version()?;
        if version != "v1" {
            bail!("the policy speaks Kubewarden protocol {version:?}, this host speaks \"v1\"");
        }
        Ok(runtime)
    }

    /// The options this runtime was loaded with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// Drop the current instance: the next call gets a fresh one, as policy-server does for
    /// every request.
    pub fn discard_instance(&self) {
        self.instance.borrow_mut().take();
    }

    /// Make the instance the next call will use now (a no-op when one is ready), so that
    /// instantiation can be timed apart from the call.
    pub fn prepare_instance(&self) -> Result<(), GuestFailure> {
        let mut slot = self.instance.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.instantiate()?);
        }
        Ok(())
    }

    fn instantiate(&self) -> Result<WapcHost, GuestFailure> {
        let provider = self
            .pre
            .rehydrate(Some(self.deadlines))
            .map_err(|e| GuestFailure::Instantiate(e.to_string()))?;
        let logs = self.options.guest_logs;
        WapcHost::new(
            Box::new(provider),
            Some(Box::new(
                move |_id, binding: &str, namespace: &str, operation: &str, payload: &[u8]| {
                    host_callback(logs, binding, namespace, operation, payload)
                },
            )),
        )
        .map_err(|e| GuestFailure::Instantiate(e.to_string()))
    }

    /// Call waPC function `op`; any failure discards the instance.
    pub fn call(
        &self,
        op: &str,
        payload: &[u8],
        host: &dyn HostCapabilities,
    ) -> Result<Vec<u8>, GuestFailure> {
        let mut slot = self.instance.borrow_mut();
        let instance = match slot.take() {
            Some(instance) => instance,
            None => self.instantiate()?,
        };
        crate::memory::reset_exhausted();
        let result = {
            let _scope = HostScope::enter(host);
            instance.call(op, payload)
        };
        match result {
            Ok(bytes) => {
                *slot = Some(instance);
                Ok(bytes)
            }
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&self, error: wapc::errors::Error) -> GuestFailure {
        let message = error.to_string();
        if let (true, Some(cap)) = (crate::memory::exhausted(), self.options.max_memory) {
            GuestFailure::MemoryExhausted {
                cap,
                detail: message,
            }
        } else if message.contains("execution deadline exceeded") {
            GuestFailure::Timeout {
                deadline: self.options.deadline,
                detail: message,
            }
        } else if message.contains("wasm backtrace") || message.contains("wasm trap") {
            GuestFailure::Trap(message)
        } else {
            GuestFailure::Error(message)
        }
    }

    /// The guest's `protocol_version` (`"v1"` for kubewarden-policy-sdk policies).
    pub fn protocol_version(&self) -> anyhow::Result<String> {
        let bytes = self.call("protocol_version", b"", &NoCluster)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("protocol_version returned an unexpected answer: {e}"))
    }

    /// The guest's `validate_settings`: `(valid, message)`. A guest failure counts as invalid
    /// settings, as in policy-evaluator (the SDK fails the call when settings do not deserialize).
    pub fn validate_settings(&self, settings: &Value) -> anyhow::Result<(bool, Option<String>)> {
        #[derive(serde::Deserialize)]
        struct Answer {
            valid: bool,
            #[serde(default)]
            message: Option<String>,
        }
        let payload = serde_json::to_vec(settings)?;
        let bytes = match self.call("validate_settings", &payload, &NoCluster) {
            Ok(bytes) => bytes,
            Err(failure) => {
                let message = format!("Error invoking settings validation callback: {failure}");
                return Ok((false, Some(message)));
            }
        };
        let answer: Answer = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("validate_settings returned an unexpected answer: {e}"))?;
        Ok((answer.valid, answer.message))
    }

    /// Evaluate a bare AdmissionRequest; returns the AdmissionResponse JSON as kwctl prints it.
    /// Guest failures become `allowed: false` with code 500, never an `Err`.
    pub fn validate(
        &self,
        request: &Value,
        settings: &Value,
        host: &dyn HostCapabilities,
    ) -> anyhow::Result<Value> {
        Ok(serde_json::to_value(
            self.admission_response(request, settings, host)?,
        )?)
    }

    /// [`PolicyRuntime::validate`] with the typed response.
    pub fn admission_response(
        &self,
        request: &Value,
        settings: &Value,
        host: &dyn HostCapabilities,
    ) -> anyhow::Result<AdmissionResponse> {
        let uid = request.get("uid").and_then(Value::as_str).unwrap_or("");
        /// policy-evaluator's `ValidateRequest` payload, serialized without copying the request.
        #[derive(serde::Serialize)]
        struct Payload<'a> {
            request: &'a Value,
            settings: &'a Value,
        }
        let payload = serde_json::to_vec(&Payload { request, settings })?;
        let bytes = match self.call("validate", &payload, host) {
            Ok(bytes) => bytes,
            Err(failure) => {
                return Ok(AdmissionResponse::internal_error(uid, &failure.to_string()))
            }
        };
        let response: ValidationResponse = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                // A guest that answers garbage is in an unknown state: start the next call afresh.
                self.discard_instance();
                let message = format!("the policy's answer is not a ValidationResponse: {e}");
                return Ok(AdmissionResponse::internal_error(uid, &message));
            }
        };
        let object = request.get("object").filter(|o| !o.is_null());
        AdmissionResponse::from_validation(uid, object, &response)
    }
}

/// Compile `bytes` for `engine` (through the engine's module cache, if any).
pub fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> anyhow::Result<wasmtime::Module> {
    wasmtime::Module::new(engine, bytes)
        .map_err(|e| anyhow!("not a valid WebAssembly module: {e:#}"))
}

/// A module compiled in this process, with what its engine was made from.
struct Compiled {
    bytes: Vec<u8>,
    cache_dir: Option<PathBuf>,
    max_memory: Option<usize>,
    engine: wasmtime::Engine,
    module: wasmtime::Module,
}

static COMPILED: Mutex<Vec<Compiled>> = Mutex::new(Vec::new());

/// The engine and module for `bytes` under `opts`, compiled once per process. The lock is held
/// while compiling so that threads loading the same policy together compile it once.
fn compiled(
    bytes: &[u8],
    opts: &RuntimeOptions,
) -> anyhow::Result<(wasmtime::Engine, wasmtime::Module)> {
    let mut cache = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    let known = cache.iter().find(|c| {
        c.bytes == bytes && c.cache_dir == opts.cache_dir && c.max_memory == opts.max_memory
    });
    if let Some(c) = known {
        return Ok((c.engine.clone(), c.module.clone()));
    }
    let engine = new_engine(opts)?;
    let module = compile(&engine, bytes)?;
    cache.push(Compiled {
        bytes: bytes.to_vec(),
        cache_dir: opts.cache_dir.clone(),
        max_memory: opts.max_memory,
        engine: engine.clone(),
        module: module.clone(),
    });
    Ok((engine, module))
}

fn new_engine(opts: &RuntimeOptions) -> anyhow::Result<wasmtime::Engine> {
    new_engine_with(opts, |_| {})
}

/// The engine [`PolicyRuntime`] uses (epoch interruption, module cache), after `configure`
/// has adjusted its configuration (e.g. the pooling allocator).
pub fn new_engine_with(
    opts: &RuntimeOptions,
    configure: impl FnOnce(&mut wasmtime::Config),
) -> anyhow::Result<wasmtime::Engine> {
    let mut config = wasmtime::Config::default();
    if let Some(cap) = opts.max_memory {
        crate::memory::install(&mut config, cap);
    }
    configure(&mut config);
    config.epoch_interruption(true);
    // `perf record` can name the guest's functions (from the module's name section) when
    // wasmtime writes /tmp/perf-<pid>.map: docs/performance-notes.md.
    if std::env::var_os("REVINJECT_PERFMAP").is_some_and(|v| !v.is_empty()) {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(dir) = &opts.cache_dir {
        let mut cache_config = wasmtime::CacheConfig::new();
        cache_config.with_directory(dir);
        match wasmtime::Cache::new(cache_config) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(e) => eprintln!(
                "revinject: module cache in {} disabled: {e:#}",
                dir.display()
            ),
        }
    }
    wasmtime::Engine::new(&config).map_err(|e| anyhow!("cannot create the wasmtime engine: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_namespaces_answers_known_and_refuses_unknown() {
        let labels = BTreeMap::from([("istio.io/rev".to_string(), "canary".to_string())]);
        let ns = StaticNamespaces::from_labels([("apps", &labels)]);
        let req = |name: &str| json!({"api_version": "v1", "kind": "Namespace", "name": name});
        let found = ns.get_resource(&req("apps")).unwrap();
        assert_eq!(found["metadata"]["labels"]["istio.io/rev"], "canary");
        assert_eq!(
            found["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "apps"
        );
        assert_eq!(
            ns.get_resource(&req("x")).unwrap_err(),
            "namespaces \"x\" not found"
        );
        let pod = json!({"api_version": "v1", "kind": "Pod", "name": "apps"});
        assert!(ns.get_resource(&pod).unwrap_err().contains("v1/Pod"));
    }

    #[test]
    fn host_callback_refuses_unknown_capabilities() {
        let err = host_callback(false, "kubewarden", "oci", "v1/verify", b"{}").unwrap_err();
        assert!(
            err.to_string().contains("kubewarden/oci/v1/verify"),
            "{err}"
        );
        assert!(host_callback(false, "kubewarden", "tracing", "log", b"{}").is_ok());
    }

    #[test]
    fn get_resource_reaches_the_scoped_host_only_inside_the_scope() {
        let ns = StaticNamespaces::from_labels([("a", &BTreeMap::new())]);
        let payload = br#"{"api_version":"v1","kind":"Namespace","name":"a"}"#;
        assert!(host_callback(false, "kubewarden", "kubernetes", "get_resource", payload).is_err());
        {
            let _scope = HostScope::enter(&ns);
            let bytes =
                host_callback(false, "kubewarden", "kubernetes", "get_resource", payload).unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["metadata"]["name"], "a");
            let missing = br#"{"api_version":"v1","kind":"Namespace","name":"b"}"#;
            let err = host_callback(false, "kubewarden", "kubernetes", "get_resource", missing)
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "Callback evaluation failure: namespaces \"b\" not found"
            );
        }
        assert!(host_callback(false, "kubewarden", "kubernetes", "get_resource", payload).is_err());
    }
}
