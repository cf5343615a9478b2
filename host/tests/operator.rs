//! Operator tooling against the real `policy.wasm` (built by `make` before the tests run):
//! `kube-inject`, `manifest` and `upgrade`.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use revinject::kube_inject::Injector;
use revinject::manifest::{namespace_selector, object_selector};
use revinject::runtime::{namespace_object, PolicyRuntime, RuntimeOptions, StaticNamespaces};
use revinject::scenario::{FlagKind, Scenario};
use revinject::upgrade::{rehearse, render_text, Report};
use revision_injector::admission::DECISION_AUDIT_KEY;
use revision_injector::settings::Settings;

mod common;
use common::repo;

fn policy() -> PolicyRuntime {
    let wasm = common::policy_wasm();
    let options = RuntimeOptions {
        guest_logs: false,
        ..RuntimeOptions::default()
    };
    PolicyRuntime::load(&wasm, &options).unwrap()
}

fn cli(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_revinject"))
        .current_dir(repo())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("revinject-op-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

const MANIFEST: &str = r#"# a comment that does not survive
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}], selector: {app: web}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
---
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: job, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata:
  name: opt-out
  namespace: shop
  labels: {sidecar.istio.io/inject: "false"}
spec:
  containers: [{name: app, image: busybox}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {key: value}
"#;

/// Every sidecar container name of a pod spec (classic or native sidecar mode).
fn proxy_count(spec: &Value) -> usize {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| {
            spec.get(*k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|c| c["name"] == "istio-proxy")
        .count()
}

#[test]
fn kube_inject_injects_templates_and_passes_other_documents_through() {
    let runtime = policy();
    let injector = Injector::new(&runtime, json!({"revision": "canary"}), None).unwrap();
    let out = injector.inject(MANIFEST).unwrap();
    let docs = yaml_documents(&out.yaml);
    let input: Vec<Value> = yaml_documents(MANIFEST)
        .into_iter()
        .filter(|d| !d.is_null())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Service", "Deployment", "CronJob", "Pod", "ConfigMap"]
    );
    assert!(!out.yaml.contains("comment"));
    assert_eq!(out.mutated, 2, "{}", out.yaml);

    // Untouched documents are equal to the input.
    for i in [0, 3, 4] {
        assert_eq!(docs[i], input[i], "document {i}");
    }
    // The Deployment: only the pod template changed, injected by canary.
    let (dep, orig) = (&docs[1], &input[1]);
    assert_eq!(dep["metadata"], orig["metadata"]);
    assert_eq!(dep["spec"]["replicas"], 2);
    let template = &dep["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["istio.io/rev"],
        "canary"
    );
    assert_eq!(template["metadata"]["labels"]["app"], "web");
    assert!(template["metadata"]["labels"]
        .get("pod-template-hash")
        .is_none());
    assert!(template["metadata"].get("generateName").is_none());
    assert_eq!(proxy_count(&template["spec"]), 1);
    // The CronJob's template lives under jobTemplate.
    let job = &docs[2]["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(job["metadata"]["annotations"]["istio.io/rev"], "canary");
    assert_eq!(proxy_count(&job["spec"]), 1);
    assert_eq!(docs[2]["spec"]["schedule"], "0 1 * * *");
    // The input's key order is kept: apiVersion, kind, metadata, spec.
    let deployment_text = out.yaml.split("---\n").nth(1).unwrap();
    assert!(
        deployment_text.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:"),
        "{deployment_text}"
    );

    // Injecting the output again changes nothing (re-injection is idempotent).
    let again = injector.inject(&out.yaml).unwrap();
    assert_eq!(yaml_documents(&again.yaml), docs);
}

#[test]
fn kube_inject_namespace_labels_decide_like_the_cluster() {
    let runtime = policy();
    // A namespace that turned injection off: nothing is injected.
    let off = BTreeMap::from([("istio-injection".to_string(), "disabled".to_string())]);
    let injector = Injector::new(&runtime, json!({"revision": "canary"}), Some(off)).unwrap();
    let out = injector.inject(MANIFEST).unwrap();
    assert_eq!(out.mutated, 0);
    let input: Vec<Value> = yaml_documents(MANIFEST)
        .into_iter()
        .filter(|d| !d.is_null())
        .collect();
    assert_eq!(yaml_documents(&out.yaml), input);
    // The default revision is selected by istio-injection=enabled by default.
    let default = Injector::new(&runtime, json!({}), None).unwrap();
    let out = default.inject(MANIFEST).unwrap();
    let docs = yaml_documents(&out.yaml);
    assert_eq!(
        docs[1]["spec"]["template"]["metadata"]["annotations"]["istio.io/rev"],
        "default"
    );
    // Admission warnings come back with the document they concern.
    let deprecated = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\n\
        kind: Pod\nmetadata: {name: p, annotations: {sidecar.istio.io/inject: \"true\"}}\n\
        spec: {containers: [{name: a, image: b}]}\n";
    let out = default.inject(deprecated).unwrap();
    assert_eq!(out.mutated, 1);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.starts_with("document 2: ") && w.contains("IST0135")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn kube_inject_errors_name_the_document_and_write_nothing() {
    let runtime = policy();
    let injector = Injector::new(&runtime, json!({"revision": "canary"}), None).unwrap();
    let broken = format!("{MANIFEST}---\nkind: Pod\nmetadata: [unclosed\n");
    let err = format!("{:#}", injector.inject(&broken).unwrap_err());
    assert!(
        err.contains("document 6") && err.contains("invalid YAML"),
        "{err}"
    );

    // A pod the policy rejects (an invalid annotation) names the document and the problem.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\n\
               metadata:\n  name: bad\n  annotations: {traffic.sidecar.istio.io/includeOutboundIPRanges: not-a-cidr}\n\
               spec: {containers: [{name: app, image: busybox}]}\n";
    let err = format!("{:#}", injector.inject(bad).unwrap_err());
    assert!(
        err.contains("document 2 (Pod bad)") && err.contains("rejected"),
        "{err}"
    );
    assert!(err.contains("includeOutboundIPRanges"), "{err}");

    assert!(Injector::new(&runtime, json!({"revison": "x"}), None).is_err());

    // Through the CLI: -o is written only when everything succeeded.
    let dir = temp_dir("ki");
    let (input, output) = (dir.join("in.yaml"), dir.join("out.yaml"));
    std::fs::write(&input, bad).unwrap();
    std::fs::write(&output, "previous\n").unwrap();
    let (ok, _, stderr) = cli(
        &[
            "kube-inject",
            "-f",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok);
    assert!(stderr.contains("document 2"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "previous\n");
    std::fs::write(&input, MANIFEST).unwrap();
    let (ok, stdout, stderr) = cli(
        &[
            "kube-inject",
            "-f",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--namespace-labels",
            "istio.io/rev=canary",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty());
    let written = std::fs::read_to_string(&output).unwrap();
    assert_eq!(yaml_documents(&written).len(), 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kube_inject_reads_json_from_stdin() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "apps"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let settings = temp_dir("ki-json").join("settings.yaml");
    std::fs::write(&settings, "revision: asm-1240-1\n").unwrap();
    let (ok, stdout, stderr) = cli(
        &[
            "kube-inject",
            "-f",
            "-",
            "--settings",
            settings.to_str().unwrap(),
        ],
        Some(&pod.to_string()),
    );
    assert!(ok, "{stderr}");
    let docs = yaml_documents(&stdout);
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0]["metadata"]["annotations"]["istio.io/rev"],
        "asm-1240-1"
    );
    assert_eq!(proxy_count(&docs[0]["spec"]), 1);
    std::fs::remove_dir_all(settings.parent().unwrap()).unwrap();
}

#[test]
fn manifest_output_is_a_valid_policy_and_policy_server_entry() {
    let runtime = policy();
    let (ok, stdout, stderr) = cli(
        &[
            "manifest",
            "--revision",
            "asm-1240-1",
            "--tag",
            "prod",
            "--tag",
            "stable",
            "--policy-server",
            "--module",
            "file:///policies/revision-injector.wasm",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let docs = yaml_documents(&stdout);
    assert_eq!(docs.len(), 2);
    let policy = &docs[0];
    assert_eq!(policy["apiVersion"], "policies.kubewarden.io/v1");
    assert_eq!(policy["kind"], "ClusterAdmissionPolicy");
    assert_eq!(policy["metadata"]["name"], "istio-injector-asm-1240-1");
    let spec = &policy["spec"];
    assert_eq!(spec["module"], "file:///policies/revision-injector.wasm");
    assert_eq!(spec["mutating"], true);
    assert_eq!(spec["backgroundAudit"], false);
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(
        spec["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}])
    );
    assert_eq!(
        spec["contextAwareResources"],
        json!([{"apiVersion": "v1", "kind": "Namespace"}])
    );
    assert_eq!(
        spec["settings"],
        json!({"revision": "asm-1240-1", "tags": ["prod", "stable"]})
    );
    let (valid, message) = runtime.validate_settings(&spec["settings"]).unwrap();
    assert!(valid, "{message:?}");
    // The selectors are well-formed LabelSelectors.
    for key in ["namespaceSelector", "objectSelector"] {
        let selector: revision_injector::selector::LabelSelector =
            serde_json::from_value(spec[key].clone()).unwrap();
        selector.validate().unwrap();
    }

    let entry = docs[1].as_object().unwrap();
    assert_eq!(entry.len(), 1);
    let (name, entry) = entry.iter().next().unwrap();
    assert_eq!(name, "istio-injector-asm-1240-1");
    assert_eq!(entry["allowedToMutate"], true);
    assert_eq!(entry["module"], spec["module"]);
    assert_eq!(entry["settings"], spec["settings"]);
    assert_eq!(
        entry["contextAwareResources"],
        spec["contextAwareResources"]
    );

    // A settings file is the base; invalid settings are refused before anything is printed.
    let dir = temp_dir("manifest");
    let file = dir.join("s.yaml");
    std::fs::write(&file, "revision: canary\nignoredNamespaces: [tools]\n").unwrap();
    let (ok, stdout, _) = cli(&["manifest", file.to_str().unwrap(), "--default"], None);
    assert!(ok);
    let policy = &yaml_documents(&stdout)[0];
    assert_eq!(policy["spec"]["settings"]["defaultRevision"], true);
    assert_eq!(
        policy["spec"]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["tools"])
    );
    let (ok, stdout, stderr) = cli(&["manifest", "--revision", "Bad_Name"], None);
    assert!(!ok && stdout.is_empty());
    assert!(stderr.contains("revision"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// For every namespace and pod label combination policy.wasm injects, the webhook selectors
/// of the manifest let the request through; and they do filter something out.
#[test]
fn manifest_selectors_never_hide_a_pod_the_policy_injects() {
    let runtime = policy();
    let variants = [
        json!({"revision": "canary", "tags": ["prod"]}),
        json!({"revision": "asm-1240-1", "defaultRevision": true, "enableNamespacesByDefault": true}),
        json!({}),
    ];
    let revs = [
        None,
        Some("default"),
        Some("canary"),
        Some("prod"),
        Some("other"),
    ];
    let labels = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
            .collect()
    };
    for settings in variants {
        let parsed = Settings::from_value(&settings).unwrap();
        let (ns_sel, obj_sel) = (namespace_selector(&parsed), object_selector());
        let (mut injected, mut filtered) = (0, 0);
        for ns_name in ["apps", "kube-system"] {
            for injection in [None, Some("enabled"), Some("disabled"), Some("x")] {
                for ns_rev in revs {
                    let ns_labels =
                        labels(&[("istio-injection", injection), ("istio.io/rev", ns_rev)]);
                    let namespace = namespace_object(ns_name, &ns_labels);
                    let full_ns = revision_injector::json::labels_of(&namespace);
                    let host = StaticNamespaces(BTreeMap::from([(ns_name.to_string(), namespace)]));
                    for inject in [None, Some("true"), Some("false")] {
                        for pod_rev in revs {
                            let pod_labels = labels(&[
                                ("sidecar.istio.io/inject", inject),
                                ("istio.io/rev", pod_rev),
                            ]);
                            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": "p", "namespace": ns_name, "labels": pod_labels},
                                "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
                            let request =
                                revinject::workload::admission_request("u", ns_name, &pod);
                            let response = runtime
                                .admission_response(&request, &settings, &host)
                                .unwrap();
                            let decision: Value = serde_json::from_str(
                                &response.audit_annotations.as_ref().unwrap()[DECISION_AUDIT_KEY],
                            )
                            .unwrap();
                            let passes = ns_sel.matches(&full_ns) && obj_sel.matches(&pod_labels);
                            if decision["inject"] == true {
                                injected += 1;
                                assert!(response.patch.is_some());
                                assert!(passes, "{settings}: {full_ns:?} / {pod_labels:?} injected but filtered out");
                            } else if !passes {
                                filtered += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            injected > 0 && filtered > 0,
            "{settings}: {injected} injected, {filtered} filtered"
        );
    }
}

fn scenario_report(path: &str) -> Report {
    let runtime = policy();
    let scenario = Scenario::load(&repo().join(path)).unwrap();
    rehearse(&runtime, &scenario).unwrap()
}

fn state<'a>(report: &'a Report, step: usize, pod: &str) -> &'a str {
    report.steps[step]
        .pods
        .iter()
        .find(|p| p.pod == pod)
        .unwrap()
        .state()
}

#[test]
fn bundled_canary_upgrade_plays_the_seed() {
    let report = scenario_report("test-data/scenarios/canary-upgrade.yaml");
    assert!(report.ok, "{}", render_text(&report));
    // Relabelling alone moves nothing; the restart does; the rollback comes back.
    assert_eq!(state(&report, 2, "frontend/web"), "asm-1233-2");
    assert_eq!(report.steps[2].flags[0].kind, FlagKind::Stale);
    assert_eq!(state(&report, 3, "frontend/web"), "asm-1240-1");
    assert_eq!(state(&report, 4, "frontend/web"), "asm-1233-2");
    // With istio-injection=enabled kept, the restart stays on the default revision.
    assert_eq!(state(&report, 8, "legacy/reports"), "asm-1233-2");
    let last = report.steps.last().unwrap();
    assert!(last.flags.is_empty());
    assert!(last
        .pods
        .iter()
        .all(|p| p.state() == "asm-1240-1" || p.pod == "tools/debug"));
}

#[test]
fn bundled_tag_move_follows_the_tag_on_restart_only() {
    let report = scenario_report("test-data/scenarios/tag-move.yaml");
    assert!(report.ok, "{}", render_text(&report));
    assert_eq!(state(&report, 1, "shop/cart"), "asm-1233-2");
    assert_eq!(state(&report, 2, "shop/cart"), "asm-1240-1");
    let removed: Vec<_> = report.steps[7]
        .flags
        .iter()
        .map(|f| (f.kind, f.subject.as_str()))
        .collect();
    assert_eq!(removed, [(FlagKind::RemovedRevision, "payments/checkout")]);
}

const SMALL: &str = "name: small\n\
    workloads: [{name: w, namespace: apps, template: {spec: {containers: [{name: c, image: i}]}}}]\n";

fn small(rest: &str) -> Report {
    let scenario = Scenario::parse(&format!("{SMALL}{rest}")).unwrap();
    rehearse(&policy(), &scenario).unwrap()
}

#[test]
fn two_default_revisions_inject_twice() {
    let rest = "namespaces: {apps: {istio-injection: enabled}}\n\
        revisions: {asm-1233-2: {defaultRevision: true}}\n\
        steps:\n- install: {name: asm-1240-1, settings: {defaultRevision: true}}\n\
        - restart: {namespace: apps}\n";
    let report = small(rest);
    assert!(!report.ok);
    let kinds =
        |i: usize| -> Vec<FlagKind> { report.steps[i].flags.iter().map(|f| f.kind).collect() };
    assert!(kinds(0).is_empty());
    // Installing makes new pods doubly injected; after the restart the pod is.
    assert_eq!(kinds(1), [FlagKind::DoubleInjection]);
    assert_eq!(kinds(2), [FlagKind::DoubleInjection]);
    let pod = &report.steps[2].pods[0];
    assert_eq!(pod.injected_by, ["asm-1233-2", "asm-1240-1"]);
    assert!(report.steps[2].flags.iter().all(|f| !f.expected));
    assert!(render_text(&report).contains("UNEXPECTED"));
}

#[test]
fn expectations_and_flags_decide_the_exit_code() {
    let dir = temp_dir("upgrade");
    let file = dir.join("s.yaml");
    let write = |rest: &str| std::fs::write(&file, format!("{SMALL}{rest}")).unwrap();
    let base = "namespaces: {apps: {istio.io/rev: asm-9}}\nrevisions: {asm-1: {}}\n";
    // A namespace naming a revision nobody serves: flagged; expected here, so it passes.
    write(&format!(
        "{base}expect: {{pods: {{apps/w: none}}, flags: [{{kind: unknownRevision, subject: apps}}]}}\nsteps: []\n"
    ));
    let (ok, stdout, stderr) = cli(
        &["upgrade", file.to_str().unwrap(), "--output", "json"],
        None,
    );
    assert!(ok, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["steps"][0]["flags"][0]["kind"], "unknownRevision");
    assert_eq!(report["steps"][0]["pods"][0]["revision"], Value::Null);
    // Not expected: non-zero exit.
    write(&format!("{base}steps: []\n"));
    let (ok, stdout, _) = cli(&["upgrade", file.to_str().unwrap()], None);
    assert!(!ok);
    assert!(
        stdout.contains("flag unknownRevision apps (UNEXPECTED)"),
        "{stdout}"
    );
    // A failed expectation: non-zero exit, named.
    write("namespaces: {apps: {istio.io/rev: asm-1}}\nrevisions: {asm-1: {}}\nexpect: {pods: {apps/w: asm-2}}\nsteps: []\n");
    let (ok, stdout, _) = cli(&["upgrade", file.to_str().unwrap()], None);
    assert!(!ok);
    assert!(
        stdout.contains("pod apps/w runs on asm-1, expected asm-2"),
        "{stdout}"
    );
    // A scenario mistake is an error naming the step.
    write("namespaces: {apps: {}}\nrevisions: {asm-1: {}}\nsteps:\n- remove: asm-2\n");
    let (ok, _, stderr) = cli(&["upgrade", file.to_str().unwrap()], None);
    assert!(!ok);
    assert!(
        stderr.contains("step 1") && stderr.contains("asm-2"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_rejected_pod_is_flagged() {
    let scenario = Scenario::parse(
        "name: rejected\nnamespaces: {apps: {istio.io/rev: asm-1}}\nrevisions: {asm-1: {}}\n\
         workloads: [{name: w, namespace: apps, template: {metadata: {annotations: \
         {traffic.sidecar.istio.io/includeOutboundIPRanges: not-a-cidr}}, spec: {containers: [{name: c, image: i}]}}}]\n\
         expect: {pods: {apps/w: rejected}, flags: [{kind: rejected}]}\nsteps: []\n",
    )
    .unwrap();
    let report = rehearse(&policy(), &scenario).unwrap();
    assert!(report.ok, "{}", render_text(&report));
    assert!(report.steps[0].flags[0]
        .message
        .contains("includeOutboundIPRanges"));
}
