//! `revinject conformance`: normalization, settings merge, request building and the runner's
//! verdicts (golden, rejection, idempotency, patch round-trip, known failures).

use revinject::cases::{case_settings, deep_merge, Expectation, Suite};
use revinject::conformance::{
    json_report, parse_known_failures, run_suite, suite_name, text_line, text_summary,
    ConformanceArgs, EngineKind, Evaluation, Evaluator, OutputFormat,
};
use revinject::normalize::{differences, normalize_pod, Quantity};
use revinject::patch::{AdmissionResponse, ValidationResponse};
use revinject::workload::{
    admission_request, namespace_object, request_namespace, to_pod, workload_documents,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
}

#[test]
fn quantities_compare_by_value() {
    assert_eq!(q("2000m"), q("2"));
    assert_eq!(q("1024Mi"), q("1Gi"));
    assert_eq!(q("1000m"), q("1"));
    assert_eq!(q("0.5"), q("500m"));
    assert_eq!(q("1e3"), q("1k"));
    assert_eq!(q("1.5Gi"), q("1536Mi"));
    assert_eq!(q("0"), q("0m"));
    assert_eq!(q("+1"), q("1"));
    assert_ne!(q("100m"), q("1"));
    assert_ne!(q("1Gi"), q("1G"));
    assert_ne!(q("-1"), q("1"));
    for bad in ["", "abc", "1Qi", "1..2", ".", "m", "1e", "1e3x"] {
        assert_eq!(Quantity::parse(bad), None, "{bad:?} is not a quantity");
    }
    assert_eq!(Quantity::from_value(&json!(2)), Some(q("2000m")));
}

#[test]
fn quantities_are_compared_by_value_only_under_resources() {
    let expected = json!({"resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m"}}});
    let actual = json!({"resources": {"limits": {"cpu": "2000m", "memory": "1024Mi"}, "requests": {"cpu": "0.1"}}});
    assert_eq!(differences(&expected, &actual), vec![]);

    let actual = json!({"resources": {"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m"}}});
    let diff = differences(&expected, &actual);
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].path, "resources.limits.cpu");

    // The same spelling difference anywhere else is a real difference.
    let diff = differences(
        &json!({"env": {"value": "2"}}),
        &json!({"env": {"value": "2000m"}}),
    );
    assert_eq!(diff.len(), 1);
}

#[test]
fn omitempty_zero_values_are_dropped_but_strings_in_lists_and_labels_stay() {
    let mut pod = json!({
        "metadata": {"labels": {"empty": ""}, "annotations": {"a": ""}, "creationTimestamp": null},
        "spec": {
            "containers": [{
                "name": "app",
                "args": ["-x", ""],
                "env": [{"name": "A", "value": ""}, {"name": "B", "value": "b"}],
                "resources": {},
                "startupProbe": {"initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 3},
            }],
            "initContainers": [{
                "name": "proxy",
                "readinessProbe": {"initialDelaySeconds": 0, "failureThreshold": 0, "successThreshold": 2},
            }],
            "volumes": [{"name": "istio-data", "emptyDir": {}}, {"name": "x", "emptyDir": null}],
        },
        "status": {},
    });
    normalize_pod(&mut pod, "default", false);
    assert_eq!(
        pod,
        json!({
            "metadata": {"labels": {"empty": ""}, "annotations": {"a": ""}},
            "spec": {
                "containers": [{
                    "name": "app",
                    "args": ["-x", ""],
                    "env": [{"name": "A"}, {"name": "B", "value": "b"}],
                    "startupProbe": {"periodSeconds": 1, "timeoutSeconds": 3},
                }],
                "initContainers": [{"name": "proxy", "readinessProbe": {"successThreshold": 2}}],
                "volumes": [{"name": "istio-data"}, {"name": "x"}],
            },
        })
    );
}

#[test]
fn zero_resource_divisor_is_dropped_and_others_kept() {
    let env = |divisor: Value| json!({"name": "GOMEMLIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": divisor}}});
    let mut pod = json!({"spec": {"containers": [{"name": "p", "env": [env(json!("0")), env(json!(0)), env(json!("1"))]}]}});
    normalize_pod(&mut pod, "default", false);
    let bare = json!({"name": "GOMEMLIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}});
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        json!([bare, bare, env(json!("1"))])
    );
}

#[test]
fn field_ref_api_version_and_status_annotation_are_dropped_everywhere() {
    let field_ref = json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}});
    let mut pod = json!({
        "metadata": {"annotations": {"sidecar.istio.io/status": "{}", "keep": "me"}},
        "spec": {
            "containers": [{"name": "a", "env": [{"name": "N", "valueFrom": field_ref}]}],
            "initContainers": [{"name": "b", "env": [{"name": "N", "valueFrom": field_ref}]}],
            "volumes": [{"name": "podinfo", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}}
            ]}}],
        },
    });
    normalize_pod(&mut pod, "default", false);
    let text = pod.to_string();
    assert!(!text.contains("apiVersion"), "{text}");
    assert!(!text.contains("sidecar.istio.io/status"), "{text}");
    assert_eq!(pod["metadata"]["annotations"], json!({"keep": "me"}));
    assert_eq!(
        pod["spec"]["initContainers"][0]["env"][0]["valueFrom"]["fieldRef"],
        json!({"fieldPath": "metadata.name"})
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["downwardAPI"]["items"][0]["fieldRef"],
        json!({"fieldPath": "metadata.labels"})
    );
}

#[test]
fn namespace_filled_in_from_the_request_is_dropped_only_when_the_input_had_none() {
    let pod = json!({"metadata": {"name": "p", "namespace": "test"}});
    let mut filled = pod.clone();
    normalize_pod(&mut filled, "test", false);
    assert_eq!(filled, json!({"metadata": {"name": "p"}}));
    let mut own = pod.clone();
    normalize_pod(&mut own, "test", true);
    assert_eq!(own, pod);
    let mut other = pod.clone();
    normalize_pod(&mut other, "default", false);
    assert_eq!(other, pod);
}

#[test]
fn a_missing_named_item_is_one_difference_not_a_cascade() {
    let expected = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]});
    let actual = json!({"env": [{"name": "A", "value": "1"}, {"name": "C", "value": "4"}]});
    let diff = differences(&expected, &actual);
    let paths: Vec<&str> = diff.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["env (item names)", "env[C].value"]);
    assert_eq!(diff[0].expected, Some(json!(["A", "B", "C"])));
    assert_eq!(diff[0].actual, Some(json!(["A", "C"])));
    let shown = diff[1].to_string();
    assert!(
        shown.contains("expected \"3\"") && shown.contains("got \"4\""),
        "{shown}"
    );
}

#[test]
fn keys_with_dots_are_quoted_in_paths() {
    let diff = differences(
        &json!({"metadata": {"annotations": {"istio.io/rev": "default"}}}),
        &json!({"metadata": {"annotations": {}}}),
    );
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].path, "metadata.annotations[\"istio.io/rev\"]");
    assert_eq!(diff[0].actual, None);
}

fn defaults() -> Value {
    json!({
        "revision": "default",
        "nativeSidecars": true,
        "values": {"global": {"hub": "registry.istio.io/testing", "tag": "latest"}},
        "meshConfig": {"trustDomain": "cluster.local", "defaultConfig": {"statusPort": 15020}},
    })
}

#[test]
fn case_settings_deep_merge_onto_the_defaults() {
    let case = json!({
        "name": "x",
        "values": {"global": {"proxy": {"image": "proxyTest"}}},
        "meshConfig": {"defaultConfig": {"interceptionMode": "TPROXY"}},
        "nativeSidecars": false,
        "features": ["ignored"],
    });
    let settings = case_settings(&defaults(), &case).unwrap();
    assert_eq!(
        settings,
        json!({
            "revision": "default",
            "defaultRevision": true,
            "nativeSidecars": false,
            "values": {"global": {
                "hub": "registry.istio.io/testing", "tag": "latest", "proxy": {"image": "proxyTest"}
            }},
            "meshConfig": {"trustDomain": "cluster.local", "defaultConfig": {
                "statusPort": 15020, "interceptionMode": "TPROXY"
            }},
        })
    );
}

#[test]
fn null_deletes_a_setting_and_is_passed_on_inside_values() {
    let case = json!({
        "nativeSidecars": null,
        "values": {"global": {"tag": null, "proxy": {"resources": {"limits": {"cpu": null, "memory": "500Mi"}}}}},
    });
    let settings = case_settings(&defaults(), &case).unwrap();
    assert!(settings.get("nativeSidecars").is_none(), "{settings}");
    // Inside values the null must reach the policy, which deletes the chart default with it.
    assert_eq!(settings["values"]["global"]["tag"], Value::Null);
    assert_eq!(
        settings["values"]["global"]["proxy"]["resources"]["limits"],
        json!({"cpu": null, "memory": "500Mi"})
    );
    assert_eq!(
        settings["values"]["global"]["hub"],
        "registry.istio.io/testing"
    );
    // Lists replace, they do not merge.
    assert_eq!(
        deep_merge(
            json!({"a": [1, 2], "b": {"c": 1}}),
            &json!({"a": [3], "b": {"d": 2}})
        ),
        json!({"a": [3], "b": {"c": 1, "d": 2}})
    );
}

#[test]
fn cni_enables_pilot_cni_merged_with_the_case_cni_values() {
    let case = json!({"cni": true, "values": {"cni": {"provider": "default"}, "global": {"network": "network1"}}});
    let settings = case_settings(&defaults(), &case).unwrap();
    assert_eq!(
        settings["values"]["pilot"]["cni"],
        json!({"enabled": true, "provider": "default"})
    );
    assert_eq!(settings["values"]["global"]["network"], "network1");

    let plain = case_settings(&defaults(), &json!({"values": {"cni": {"provider": "x"}}})).unwrap();
    assert!(plain["values"].get("pilot").is_none(), "{plain}");
    let off = case_settings(&defaults(), &json!({"cni": false})).unwrap();
    assert!(off["values"].get("pilot").is_none(), "{off}");
}

#[test]
fn cni_up_to_istio_1_23_is_the_operators_istio_cni_value() {
    let case = json!({"cni": true, "istioVersion": "1.23.3", "values": {"istio_cni": {"provider": "default"}}});
    let settings = case_settings(&defaults(), &case).unwrap();
    assert_eq!(
        settings["values"]["istio_cni"],
        json!({"enabled": true, "provider": "default"})
    );
    assert!(settings["values"].get("pilot").is_none(), "{settings}");
    let newer = json!({"cni": true, "istioVersion": "1.24"});
    let settings = case_settings(&defaults(), &newer).unwrap();
    assert_eq!(settings["values"]["pilot"]["cni"]["enabled"], true);
    let bad = json!({"cni": true, "istioVersion": "1.31"});
    assert!(case_settings(&defaults(), &bad).is_err());
}

#[test]
fn suite_parsing_checks_expectations_and_warns_about_unknown_keys() {
    let dir = Path::new("/suite");
    let (suite, warnings) = Suite::parse(
        dir,
        "defaults: {revision: default, values: {}}\ncases:\n\
         - {name: a, input: inputs/a.yaml, expected: expected/a.injected, setup: x}\n\
         - {name: b, input: inputs/b.yaml, expectError: includeipranges}\n",
    )
    .unwrap();
    assert_eq!(suite.cases.len(), 2);
    assert_eq!(
        suite.cases[0].expectation,
        Expectation::Golden("expected/a.injected".into())
    );
    assert_eq!(
        suite.cases[1].expectation,
        Expectation::Error("includeipranges".into())
    );
    assert_eq!(warnings, ["case a: unknown key `setup` ignored"]);

    let both = "cases:\n- {name: a, input: i, expected: e, expectError: x}\n";
    let err = format!("{:#}", Suite::parse(dir, both).unwrap_err());
    assert!(err.contains("exactly one"), "{err}");
    let twice = "cases:\n- {name: a, input: i, expected: e}\n- {name: a, input: i, expected: e}\n";
    let err = format!("{:#}", Suite::parse(dir, twice).unwrap_err());
    assert!(err.contains("used twice"), "{err}");
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
      - name: hello
        image: hello:1
";

#[test]
fn deployment_pods_are_owned_by_a_fake_replica_set() {
    let docs = workload_documents(DEPLOYMENT).unwrap();
    let pod = to_pod(&docs[0]).unwrap();
    assert_eq!(
        pod,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "labels": {"app": "hello", "pod-template-hash": "fake"},
                "generateName": "hello-fake-",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hello-fake", "controller": true}],
            },
            "spec": {"containers": [{"name": "hello", "image": "hello:1"}]},
        })
    );
    assert_eq!(request_namespace(&docs[0]), "default");
}

#[test]
fn other_workloads_own_their_pods_and_replace_existing_owners() {
    let replica_set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "apps"},
        "spec": {"template": {"metadata": {"name": "tpl", "ownerReferences": [{"kind": "Other", "name": "x"}]},
                 "spec": {"containers": []}}},
    });
    let pod = to_pod(&replica_set).unwrap();
    assert_eq!(pod["metadata"]["name"], "tpl");
    assert_eq!(pod["metadata"]["generateName"], "rs");
    assert_eq!(
        pod["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "controller": true}])
    );
    assert!(pod["metadata"].get("labels").is_none());
    assert_eq!(request_namespace(&replica_set), "apps");
    assert!(pod["metadata"].get("namespace").is_none());

    for api_version in ["apps.openshift.io/v1", "v1"] {
        let dc = json!({"apiVersion": api_version, "kind": "DeploymentConfig", "metadata": {"name": "dc"},
                        "spec": {"template": {"spec": {"containers": []}}}});
        let pod = to_pod(&dc).unwrap();
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": api_version, "kind": "DeploymentConfig", "name": "dc", "controller": true}])
        );
        assert_eq!(pod["metadata"]["generateName"], "dc");
    }

    let no_template = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"}, "spec": {}});
    let err = to_pod(&no_template).unwrap_err().to_string();
    assert!(err.contains("spec.template"), "{err}");
}

#[test]
fn pods_are_sent_as_written_and_documents_are_filtered() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n\n---\n\
                apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nspec: {containers: []}\n---\n";
    let docs = workload_documents(&format!("{text}{DEPLOYMENT}")).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(to_pod(&docs[0]).unwrap(), docs[0]);
    assert_eq!(docs[1]["kind"], "Deployment");

    let request = admission_request("uid-1", &request_namespace(&docs[0]), &docs[0]);
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["namespace"], "ns");
    assert_eq!(
        request["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(request["resource"]["resource"], "pods");
    assert_eq!(request["object"], docs[0]);
    assert!(request.get("oldObject").is_none());

    let err = format!(
        "{:#}",
        workload_documents("kind: List\nitems: []\n").unwrap_err()
    );
    assert!(err.contains("List"), "{err}");
}

#[test]
fn the_namespace_is_labelled_for_the_revision() {
    let default = namespace_object("default", "default");
    assert_eq!(default["metadata"]["labels"]["istio-injection"], "enabled");
    assert!(default["metadata"]["labels"].get("istio.io/rev").is_none());
    let canary = namespace_object("apps", "canary");
    assert_eq!(canary["metadata"]["labels"]["istio.io/rev"], "canary");
    assert!(canary["metadata"]["labels"]
        .get("istio-injection")
        .is_none());
    assert_eq!(canary["metadata"]["name"], "apps");
}

#[test]
fn known_failures_list_names_and_reasons() {
    let text = "istio/a # proxy env differs\n\n# a comment\n  istio/b  \nistio/c#x\nistio-1.23.3/a # other\n";
    let known = parse_known_failures(text, "istio").unwrap();
    assert_eq!(
        known,
        BTreeMap::from([
            ("a".to_string(), "proxy env differs".to_string()),
            ("b".to_string(), String::new()),
            ("c".to_string(), "x".to_string()),
        ])
    );
    let old = parse_known_failures(text, "istio-1.23.3").unwrap();
    assert_eq!(
        old,
        BTreeMap::from([("a".to_string(), "other".to_string())])
    );
    assert!(parse_known_failures(text, "istio-1.25.5")
        .unwrap()
        .is_empty());
}

#[test]
fn a_known_failure_without_its_suite_is_an_error_naming_the_line() {
    let e = parse_known_failures("istio/a # ok\nhello # env differs\n", "istio").unwrap_err();
    let e = e.to_string();
    assert!(e.contains("line 2") && e.contains("names no suite"), "{e}");
}

#[test]
fn suites_are_named_by_their_directory() {
    assert_eq!(
        suite_name(Path::new("/x/conformance/istio-1.23.3")),
        "istio-1.23.3"
    );
    assert_eq!(suite_name(Path::new("/x/conformance/istio/")), "istio");
}

// ---- the runner, end to end, on a small suite written to a temporary directory ----

const GOLDEN: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  strategy: {}
  template:
    metadata:
      annotations:
        istio.io/rev: default
        sidecar.istio.io/status: '{\"containers\":[\"istio-proxy\"]}'
      creationTimestamp: null
      labels:
        app: hello
        security.istio.io/tlsMode: istio
    spec:
      containers:
      - name: hello
        image: hello:1
        resources: {}
      - name: istio-proxy
        image: proxyv2
        env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: ISTIO_META_APP_CONTAINERS
          value: hello
        resources:
          limits:
            cpu: \"2\"
            memory: 1Gi
        readinessProbe:
          initialDelaySeconds: 0
          periodSeconds: 15
      volumes:
      - name: istio-data
        emptyDir: {}
status: {}
";

struct TempSuite(PathBuf);

impl TempSuite {
    fn new(tag: &str) -> TempSuite {
        let dir = std::env::temp_dir().join(format!(
            "revinject-conformance-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("inputs")).unwrap();
        std::fs::create_dir_all(dir.join("expected")).unwrap();
        std::fs::write(dir.join("inputs/hello.yaml"), DEPLOYMENT).unwrap();
        std::fs::write(dir.join("expected/hello.yaml.injected"), GOLDEN).unwrap();
        std::fs::write(
            dir.join("cases.yaml"),
            "defaults: {revision: default, nativeSidecars: true, values: {}, meshConfig: {}}\n\
             cases:\n\
             - {name: hello, input: inputs/hello.yaml, expected: expected/hello.yaml.injected}\n\
             - {name: bad-annotation, input: inputs/hello.yaml, expectError: includeIPRanges}\n",
        )
        .unwrap();
        TempSuite(dir)
    }
}

impl Drop for TempSuite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake policy does.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Return the golden pod, spelled differently where normalization allows it.
    Golden,
    /// Like `Golden`, with one env value wrong.
    WrongEnv,
    /// Like `Golden`, but injecting again adds another annotation.
    NotIdempotent,
    /// A patch that does not produce the mutated object it claims.
    BrokenPatch,
}

struct FakePolicy {
    behaviour: Behaviour,
    golden: Value,
    requests: Vec<Value>,
}

impl FakePolicy {
    fn new(behaviour: Behaviour, suite: &TempSuite) -> FakePolicy {
        let text = std::fs::read_to_string(suite.0.join("expected/hello.yaml.injected")).unwrap();
        let golden = to_pod(&workload_documents(&text).unwrap()[0]).unwrap();
        FakePolicy {
            behaviour,
            golden,
            requests: Vec::new(),
        }
    }

    /// The golden with the noise Istio's Go round-trip hides: non-canonical quantities,
    /// fieldRef apiVersion, zero probe fields, another status annotation.
    fn injected(&self) -> Value {
        let mut pod = self.golden.clone();
        pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json!("{\"other\":true}");
        let proxy = &mut pod["spec"]["containers"][1];
        proxy["resources"]["limits"] = json!({"cpu": "2000m", "memory": "1024Mi"});
        proxy["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] = json!("v1");
        proxy["readinessProbe"]["timeoutSeconds"] = json!(0);
        if self.behaviour == Behaviour::WrongEnv {
            proxy["env"][1]["value"] = json!("wrong");
        }
        pod
    }
}

impl Evaluator for FakePolicy {
    fn validate_settings(&mut self, settings: &Value) -> anyhow::Result<Result<(), String>> {
        assert_eq!(settings["defaultRevision"], true);
        Ok(Ok(()))
    }

    fn evaluate(
        &mut self,
        request: &Value,
        settings: &Value,
        namespace: &Value,
    ) -> anyhow::Result<Evaluation> {
        assert_eq!(settings["revision"], "default");
        assert_eq!(
            namespace["metadata"]["labels"]["istio-injection"],
            "enabled"
        );
        self.requests.push(request.clone());
        let uid = request["uid"].as_str().unwrap();
        let object = &request["object"];
        let (validation, claimed) = if uid.starts_with("bad-annotation") {
            let rejection = ValidationResponse {
                accepted: false,
                message: Some("invalid value for annotation 'traffic.sidecar.istio.io/includeOutboundIPRanges': INCLUDEIPRANGES invalid".into()),
                code: Some(400),
                ..Default::default()
            };
            (rejection, None)
        } else {
            let mut mutated = if uid.ends_with("-again") {
                object.clone()
            } else {
                self.injected()
            };
            if uid.ends_with("-again") && self.behaviour == Behaviour::NotIdempotent {
                mutated["metadata"]["annotations"]["again"] = json!("yes");
            }
            let mut claimed = mutated.clone();
            if self.behaviour == Behaviour::BrokenPatch {
                claimed["metadata"]["labels"]["claimed"] = json!("only");
            }
            let accepted = ValidationResponse {
                accepted: true,
                mutated_object: Some(mutated),
                ..Default::default()
            };
            (accepted, Some(claimed))
        };
        let response = AdmissionResponse::from_validation(uid, Some(object), &validation)?;
        Ok(Evaluation {
            response: serde_json::to_value(response)?,
            mutated_object: claimed,
        })
    }
}

fn args(dir: &Path) -> ConformanceArgs {
    ConformanceArgs {
        dir: dir.to_path_buf(),
        engine: EngineKind::Native,
        policy: PathBuf::from("policy.wasm"),
        cases: Vec::new(),
        output: OutputFormat::Json,
        known_failures: PathBuf::from("none"),
        dump: None,
    }
}

#[test]
fn a_policy_that_matches_istio_passes_every_case() {
    let suite_dir = TempSuite::new("pass");
    let (suite, _) = Suite::load(&suite_dir.0).unwrap();
    let mut policy = FakePolicy::new(Behaviour::Golden, &suite_dir);
    let report = run_suite(&suite, &args(&suite_dir.0), &BTreeMap::new(), &mut policy).unwrap();
    let texts: Vec<String> = report.cases.iter().map(text_line).collect();
    assert_eq!(texts, ["PASS hello\n", "PASS bad-annotation\n"]);
    assert!(report.ok());
    assert_eq!(text_summary(&report), "2 passed, 0 failed\n");

    // The requests: the Deployment's pod, then the injected pod again, then the rejected one.
    assert_eq!(policy.requests.len(), 3);
    assert_eq!(
        policy.requests[0]["object"]["metadata"]["generateName"],
        "hello-fake-"
    );
    assert_eq!(policy.requests[0]["namespace"], "default");
    assert_eq!(policy.requests[1]["object"], policy.injected());
}

#[test]
fn a_wrong_value_fails_with_its_path_and_both_values() {
    let suite_dir = TempSuite::new("wrong");
    let (suite, _) = Suite::load(&suite_dir.0).unwrap();
    let mut policy = FakePolicy::new(Behaviour::WrongEnv, &suite_dir);
    let report = run_suite(&suite, &args(&suite_dir.0), &BTreeMap::new(), &mut policy).unwrap();
    assert!(!report.ok());
    assert_eq!(report.unexpected, ["hello"]);
    let line = text_line(&report.cases[0]);
    assert!(
        line.starts_with("FAIL hello: the injected pod differs from the golden (1 difference)\n"),
        "{line}"
    );
    assert!(
        line.contains("spec.containers[istio-proxy].env[ISTIO_META_APP_CONTAINERS].value: expected \"hello\", got \"wrong\""),
        "{line}"
    );
    assert_eq!(
        text_summary(&report).lines().last(),
        Some("1 passed, 1 failed")
    );
    let json = json_report(&report, EngineKind::Native);
    assert_eq!(json["failed"], 1);
    assert_eq!(
        json["cases"][0]["problems"][0]["differences"][0]["path"],
        "spec.containers[istio-proxy].env[ISTIO_META_APP_CONTAINERS].value"
    );
}

#[test]
fn reinjection_that_changes_the_pod_fails_idempotency() {
    let suite_dir = TempSuite::new("idem");
    let (suite, _) = Suite::load(&suite_dir.0).unwrap();
    let mut policy = FakePolicy::new(Behaviour::NotIdempotent, &suite_dir);
    let report = run_suite(&suite, &args(&suite_dir.0), &BTreeMap::new(), &mut policy).unwrap();
    let line = text_line(&report.cases[0]);
    assert!(
        line.contains("idempotency: re-sending the injected pod changes it"),
        "{line}"
    );
    assert!(line.contains("metadata.annotations.again"), "{line}");
}

#[test]
fn a_patch_that_is_not_the_mutated_object_fails_the_round_trip() {
    let suite_dir = TempSuite::new("trip");
    let (suite, _) = Suite::load(&suite_dir.0).unwrap();
    let mut policy = FakePolicy::new(Behaviour::BrokenPatch, &suite_dir);
    let report = run_suite(&suite, &args(&suite_dir.0), &BTreeMap::new(), &mut policy).unwrap();
    let line = text_line(&report.cases[0]);
    assert!(line.contains("patch round-trip"), "{line}");
    assert!(line.contains("metadata.labels.claimed"), "{line}");
}

#[test]
fn known_failures_are_counted_as_failed_and_must_shrink() {
    let suite_dir = TempSuite::new("known");
    let (suite, _) = Suite::load(&suite_dir.0).unwrap();
    let known = parse_known_failures(
        "known/hello # env differs\nknown/bad-annotation # not rejected yet\n",
        "known",
    )
    .unwrap();
    let mut policy = FakePolicy::new(Behaviour::WrongEnv, &suite_dir);
    let report = run_suite(&suite, &args(&suite_dir.0), &known, &mut policy).unwrap();
    assert!(report.unexpected.is_empty());
    // bad-annotation passes although listed: the run fails so the list gets shorter.
    assert_eq!(report.fixed, ["bad-annotation"]);
    assert!(!report.ok());
    assert!(text_line(&report.cases[0]).starts_with("FAIL hello (known): "));
    assert!(text_line(&report.cases[1]).contains("remove it"));
    assert_eq!(
        text_summary(&report).lines().last(),
        Some("1 passed, 1 failed")
    );

    let only_hello = parse_known_failures("known/hello # env differs\n", "known").unwrap();
    let mut policy = FakePolicy::new(Behaviour::WrongEnv, &suite_dir);
    let report = run_suite(&suite, &args(&suite_dir.0), &only_hello, &mut policy).unwrap();
    assert!(report.ok());
}

#[test]
fn the_case_filter_runs_only_the_named_case_and_rejects_unknown_names() {
    let suite_dir = TempSuite::new("filter");
    let (suite, _) = Suite::load(&suite_dir.0).unwrap();
    let mut filtered = args(&suite_dir.0);
    filtered.cases = vec!["bad-annotation".into()];
    let mut policy = FakePolicy::new(Behaviour::Golden, &suite_dir);
    let report = run_suite(&suite, &filtered, &BTreeMap::new(), &mut policy).unwrap();
    assert_eq!(report.cases.len(), 1);
    assert_eq!(report.cases[0].name, "bad-annotation");

    filtered.cases = vec!["nope".into()];
    let err = run_suite(&suite, &filtered, &BTreeMap::new(), &mut policy)
        .err()
        .unwrap();
    assert!(err.to_string().contains("nope"), "{err}");
}

/// Leaves pods alone, or adds only a status annotation (which normalization removes).
struct Annotator {
    annotate: bool,
}

impl Evaluator for Annotator {
    fn validate_settings(&mut self, _settings: &Value) -> anyhow::Result<Result<(), String>> {
        Ok(Ok(()))
    }

    fn evaluate(
        &mut self,
        request: &Value,
        _settings: &Value,
        _namespace: &Value,
    ) -> anyhow::Result<Evaluation> {
        let uid = request["uid"].as_str().unwrap();
        let mut mutated = request["object"].clone();
        if self.annotate && !uid.ends_with("-again") {
            mutated["metadata"]["annotations"] = json!({"sidecar.istio.io/status": "{}"});
        }
        let validation = ValidationResponse {
            accepted: true,
            mutated_object: Some(mutated.clone()),
            ..Default::default()
        };
        let response =
            AdmissionResponse::from_validation(uid, Some(&request["object"]), &validation)?;
        Ok(Evaluation {
            response: serde_json::to_value(response)?,
            mutated_object: Some(mutated),
        })
    }
}

#[test]
fn a_pod_istio_leaves_alone_must_not_be_patched_at_all() {
    let suite_dir = TempSuite::new("alone");
    std::fs::write(suite_dir.0.join("expected/hello.yaml.same"), DEPLOYMENT).unwrap();
    std::fs::write(
        suite_dir.0.join("cases.yaml"),
        "cases:\n- {name: alone, input: inputs/hello.yaml, expected: expected/hello.yaml.same}\n",
    )
    .unwrap();
    let (suite, _) = Suite::load(&suite_dir.0).unwrap();
    let run = |annotate: bool| {
        run_suite(
            &suite,
            &args(&suite_dir.0),
            &BTreeMap::new(),
            &mut Annotator { annotate },
        )
        .unwrap()
    };
    assert!(run(false).ok());
    let report = run(true);
    let line = text_line(&report.cases[0]);
    assert!(
        line.contains("Istio does not inject this pod, but the policy patched it"),
        "{line}"
    );
    assert!(line.contains("metadata.annotations"), "{line}");
}
