//! `revinject e2e`: the fixtures through Kubewarden's real policy-server, end to end.
//!
//! One policy-server on loopback loads the annotated `policy.wasm` once per distinct settings
//! file of the fixtures (each revision of the canary pair, the seed's `asm-1233-2` and its
//! neighbour, ...), as `revinject manifest --policy-server` writes the entries, with
//! `contextAwareResources: [{apiVersion: v1, kind: Namespace}]`. Namespaces come from
//! [`FakeKube`] on loopback, loaded from each case's session just before the case is sent,
//! so relabelling a namespace between canary steps is a real relabel in the fake API.
//!
//! Each case's AdmissionReview goes over HTTP to `/validate/<its policy>`; the answer must
//! meet the case's expectation and equal revinject's own answer (as `revinject crosscheck`
//! compares them; the message and warnings are not compared where the Namespace lookup
//! fails, since they quote the host's error text, which differs; the expectation still
//! applies). Cases whose settings the policy refuses are started in
//! a policy-server of their own, which must refuse to start naming the problem.
//!
//! policy-server caches a Namespace it has read for a few seconds. After a relabel the case
//! is therefore sent until policy-server has read the namespace again (a bounded wait, as a
//! cluster's pods created right after `kubectl label` may still see the old labels).

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::crosscheck::{compare, revinject_answer, EngineAnswer};
use crate::engines::{self, Located, KWCTL, POLICY_SERVER};
use crate::fake_kube::FakeKube;
use crate::input;
use crate::manifest;
use crate::patch::AdmissionResponse;
use crate::policy_server::{self, HttpClient, Launch, PolicyEntry, PolicyServer};
use crate::replay::{self, Case};
use crate::runtime::{PolicyRuntime, RuntimeOptions};
use crate::session::{Answer, CallbackRequest, Session};

/// Arguments of `revinject e2e`.
#[derive(clap::Args, Debug, Clone)]
pub struct E2eArgs {
    /// Directory searched recursively for `case.yaml` manifests.
    #[arg(default_value = "test-data")]
    pub dir: PathBuf,
    /// The policy module.
    #[arg(long, default_value = "policy.wasm")]
    pub policy: PathBuf,
    /// Kubewarden metadata to annotate the module with.
    #[arg(long, default_value = "policy-metadata.yml")]
    pub metadata: PathBuf,
    /// kwctl, to annotate the module (default: $KWCTL, PATH, ../shared/kubewarden/bin/kwctl).
    #[arg(long)]
    pub kwctl: Option<PathBuf>,
    /// policy-server (default: $POLICY_SERVER, PATH, ../shared/kubewarden/bin/policy-server).
    #[arg(long)]
    pub policy_server: Option<PathBuf>,
    /// Working directory (policies.yml, kubeconfig, logs).
    #[arg(long, default_value = "target/policy-server-e2e")]
    pub work_dir: PathBuf,
    /// Print both answers of every case.
    #[arg(long)]
    pub verbose: bool,
}

/// Both engines, or why the command is skipped.
pub fn locate_engines(
    kwctl: Option<&Path>,
    policy_server: Option<&Path>,
) -> anyhow::Result<Result<(PathBuf, PathBuf), String>> {
    let kwctl = match KWCTL.locate(kwctl)? {
        Located::Found(p, _) => p,
        Located::Missing(why) => return Ok(Err(why)),
    };
    let server = match POLICY_SERVER.locate(policy_server)? {
        Located::Found(p, _) => p,
        Located::Missing(why) => return Ok(Err(why)),
    };
    Ok(Ok((kwctl, server)))
}

/// A case ready to send.
struct Prepared {
    case: Case,
    request: Value,
    review: Vec<u8>,
    settings: Value,
    session: Option<PathBuf>,
    /// The policy id it goes to.
    policy: String,
}

/// How long policy-server may take to start (it compiles every policy first).
const READY_WITHIN: Duration = Duration::from_secs(180);
/// The longest wait for policy-server to read a relabelled namespace again.
const REFRESH_WITHIN: Duration = Duration::from_secs(60);

/// `revinject e2e`.
pub fn run(args: &E2eArgs, options: &RuntimeOptions) -> anyhow::Result<ExitCode> {
    let (kwctl, server_binary) =
        match locate_engines(args.kwctl.as_deref(), args.policy_server.as_deref())? {
            Ok(found) => found,
            Err(why) => {
                println!("policy-server e2e skipped: {why}");
                return Ok(ExitCode::SUCCESS);
            }
        };
    let cases = replay::discover(&args.dir)?;
    if cases.is_empty() {
        bail!("no case.yaml under {}", args.dir.display());
    }
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create {}", args.work_dir.display()))?;
    let annotated = args.work_dir.join("annotated-policy.wasm");
    engines::annotate(&kwctl, &args.policy, &args.metadata, &annotated)?;
    let runtime = PolicyRuntime::load(&args.policy, options)?;
    let module = policy_server::file_url(&annotated);

    // One policy per distinct settings; refused settings apart.
    let mut policies: Vec<PolicyEntry> = Vec::new();
    let mut by_settings: BTreeMap<String, String> = BTreeMap::new();
    let mut served = Vec::new();
    let mut refused = Vec::new();
    for case in cases {
        let spec = &case.spec;
        let request_path = case
            .dir
            .join(spec.request.as_deref().unwrap_or(Path::new("request.json")));
        let settings_path = spec.settings.as_ref().map(|p| case.dir.join(p));
        let request = input::read_request(&request_path)?;
        let document: Value = serde_json::from_str(&std::fs::read_to_string(&request_path)?)
            .with_context(|| format!("{} is not JSON", request_path.display()))?;
        let review = serde_json::to_vec(&policy_server::admission_review(&document))?;
        let settings = input::read_settings(settings_path.as_deref())?;
        let (valid, _) = runtime.validate_settings(&settings)?;
        let session = spec.session.as_ref().map(|p| case.dir.join(p));
        if !valid {
            refused.push((case, settings));
            continue;
        }
        let key = settings.to_string();
        let policy = match by_settings.get(&key) {
            Some(id) => id.clone(),
            None => {
                let entry = manifest::policy_server_entry(&settings, &module)?;
                let (name, body) = entry
                    .as_object()
                    .and_then(|m| m.iter().next())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .ok_or_else(|| anyhow!("an empty policies.yml entry"))?;
                let mut id = name.clone();
                let mut n = 2;
                while policies.iter().any(|p| p.id == id) {
                    id = format!("{name}-{n}");
                    n += 1;
                }
                policies.push(PolicyEntry {
                    id: id.clone(),
                    entry: body,
                });
                by_settings.insert(key, id.clone());
                id
            }
        };
        served.push(Prepared {
            case,
            request,
            review,
            settings,
            session,
            policy,
        });
    }

    let kube = FakeKube::start(0)?;
    let kubeconfig = kube.write_kubeconfig(&args.work_dir.join("kubeconfig"))?;
    let started = Instant::now();
    let server = PolicyServer::start(&Launch {
        binary: &server_binary,
        policies: &policies,
        kubeconfig: Some(&kubeconfig),
        work_dir: &args.work_dir.join("server"),
        workers: Some(2),
        ready_within: READY_WITHIN,
    })?;
    println!(
        "policy-server {} ready on {} in {:.1} s with {} policies ({}), fake Kubernetes API on {}",
        server_binary.display(),
        server.addr(),
        started.elapsed().as_secs_f64(),
        policies.len(),
        policies
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        kube.url()
    );
    let mut client = HttpClient::connect(server.addr())?;
    let (mut passed, mut failed) = (0, 0);
    let mut report = |name: &str, problems: Vec<String>, detail: String| {
        if problems.is_empty() {
            passed += 1;
            println!(
                "ok   {name}{}",
                if args.verbose { detail } else { String::new() }
            );
        } else {
            failed += 1;
            println!("FAIL {name}: {}{detail}", problems.join("; "));
        }
    };

    // What the fake API currently serves per namespace (to see a relabel coming).
    let mut serving: BTreeMap<String, Answer> = BTreeMap::new();
    for prepared in &served {
        let result = run_served(prepared, &runtime, &kube, &mut client, &mut serving);
        match result {
            Ok((problems, detail)) => report(&prepared.case.name, problems, detail),
            Err(e) => report(
                &prepared.case.name,
                vec![format!("{e:#}")],
                format!("\n     policy-server log:\n{}", server.log_tail(15)),
            ),
        }
    }
    drop(client);
    drop(server);

    for (case, settings) in &refused {
        let problems = run_refused(case, settings, &server_binary, &module, &kubeconfig, args)?;
        report(&case.name, problems, String::new());
    }
    drop(kube);
    println!(
        "{passed} passed, {failed} failed through policy-server ({} cases, {:.1} s)",
        passed + failed,
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Serve the case's session from the fake API; the names whose answer changed.
fn load_namespaces(
    kube: &FakeKube,
    session: &Session,
    serving: &mut BTreeMap<String, Answer>,
) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for (request, answer) in session.exchanges() {
        let CallbackRequest::KubernetesGetResource { kind, name, .. } = request;
        if kind != "Namespace" || serving.get(name) == Some(answer) {
            continue;
        }
        match answer {
            Answer::Success(namespace) => kube.set_namespace(namespace.clone())?,
            Answer::Error(message) => kube.set_error(name, 403, message),
        }
        serving.insert(name.clone(), answer.clone());
        changed.push(name.clone());
    }
    Ok(changed)
}

fn send(client: &mut HttpClient, prepared: &Prepared) -> anyhow::Result<AdmissionResponse> {
    let (code, body) = client.validate(&prepared.policy, &prepared.review)?;
    if code != 200 {
        bail!("policy-server answered HTTP {code}: {body}");
    }
    let response = body
        .get("response")
        .ok_or_else(|| anyhow!("policy-server's answer has no `response`: {body}"))?;
    serde_json::from_value(response.clone()).with_context(|| {
        format!("policy-server's response is not an AdmissionResponse: {response}")
    })
}

fn run_served(
    prepared: &Prepared,
    runtime: &PolicyRuntime,
    kube: &FakeKube,
    client: &mut HttpClient,
    serving: &mut BTreeMap<String, Answer>,
) -> anyhow::Result<(Vec<String>, String)> {
    let session = match &prepared.session {
        Some(path) => Session::load(path)?,
        None => Session::parse("--- []\n")?,
    };
    let lookup_fails = prepared.session.is_none()
        || session
            .exchanges()
            .iter()
            .any(|(_, a)| matches!(a, Answer::Error(_)));
    let before: Vec<(String, u64)> = load_namespaces(kube, &session, serving)?
        .into_iter()
        .map(|name| {
            let gets = kube.gets(&name);
            (name, gets)
        })
        .collect();
    // A namespace policy-server has read before may be in its cache: send until it reads
    // the relabelled one.
    let deadline = Instant::now() + REFRESH_WITHIN;
    let mut theirs = send(client, prepared)?;
    for (name, gets) in before.iter().filter(|(_, g)| *g > 0) {
        while kube.gets(name) <= *gets {
            if Instant::now() > deadline {
                bail!(
                    "policy-server did not read namespace {name} again within {REFRESH_WITHIN:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
            theirs = send(client, prepared)?;
        }
    }
    let ours = revinject_answer(runtime, &prepared.request, &prepared.settings, &session)?;
    let object = prepared
        .request
        .get("object")
        .cloned()
        .unwrap_or(Value::Null);
    let theirs = EngineAnswer::Response(theirs);
    let mut problems: Vec<String> = compare(&object, &ours, &theirs)
        .into_iter()
        .filter(|p| !(lookup_fails && (p.starts_with("message:") || p.starts_with("warnings:"))))
        .map(|p| p.replace("kwctl", "policy-server"))
        .collect();
    if let (EngineAnswer::Response(response), None) = (&theirs, &prepared.case.spec.pending) {
        let expect = prepared.case.spec.expect.clone().unwrap_or_default();
        problems.extend(
            replay::check(&expect, &prepared.request, response)
                .into_iter()
                .map(|p| format!("policy-server: {p}")),
        );
    }
    let detail = format!(
        "\n     policy {}\n     revinject:     {}\n     policy-server: {}",
        prepared.policy,
        summary(&ours),
        summary(&theirs)
    );
    Ok((problems, detail))
}

fn summary(answer: &EngineAnswer) -> String {
    match answer {
        EngineAnswer::Response(r) => {
            let mut r = r.clone();
            r.patch = r.patch.map(|p| format!("<{} bytes>", p.len()));
            r.audit_annotations = None;
            serde_json::to_string(&r).unwrap_or_default()
        }
        EngineAnswer::SettingsRefused(m) => format!("settings refused: {m}"),
    }
}

/// A policy with settings the policy refuses: policy-server must refuse to start, naming it.
fn run_refused(
    case: &Case,
    settings: &Value,
    binary: &Path,
    module: &str,
    kubeconfig: &Path,
    args: &E2eArgs,
) -> anyhow::Result<Vec<String>> {
    let expect = case.spec.expect.clone().unwrap_or_default();
    let mut problems = Vec::new();
    if expect.settings_valid != Some(false) {
        problems.push("revinject refuses the settings, the case expects them valid".into());
    }
    let entry = PolicyEntry {
        id: "refused".into(),
        entry: {
            let mut e = serde_json::json!({
                "module": module,
                "policyMode": "protect",
                "allowedToMutate": true,
                "contextAwareResources": [{"apiVersion": "v1", "kind": "Namespace"}],
            });
            e["settings"] = settings.clone();
            e
        },
    };
    let dir = args
        .work_dir
        .join(format!("refused-{}", case.name.replace('/', "-")));
    let started = PolicyServer::start(&Launch {
        binary,
        policies: std::slice::from_ref(&entry),
        kubeconfig: Some(kubeconfig),
        work_dir: &dir,
        workers: Some(1),
        ready_within: READY_WITHIN,
    });
    match started {
        Ok(_server) => {
            problems.push("policy-server started with settings the policy refuses".into())
        }
        Err(e) => {
            let error = format!("{e:#}");
            if !error.contains("Policy settings are invalid") {
                problems.push(format!("policy-server failed for another reason: {error}"));
            }
            if let Some(want) = &expect.message {
                if !error.contains(want.as_str()) {
                    problems.push(format!("policy-server's error lacks {want:?}: {error}"));
                }
            }
        }
    }
    Ok(problems)
}
