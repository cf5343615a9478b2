//! `revinject import` over the cluster dumps of `test-data/import/` (rendered from Istio's
//! charts by `test-data/import/gen-fixtures.py`): expected outputs, refusals and warnings, the
//! round trip against Istio 1.23.3's conformance suite, and agreement with the dump's webhooks.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use revinject::cases::Suite;
use revinject::check::{check_pod, pod_object, Installed};
use revinject::conformance::{run_case, NativeEvaluator};
use revinject::import::{import, manifests_yaml, read_objects, settings_yaml, summary, Import};
use revinject::manifest::DEFAULT_MODULE;
use revinject::runtime::namespace_object;
use revision_injector::selector::LabelSelector;

mod common;
use common::repo;

const FIXTURES: [&str; 5] = [
    "canary",
    "main-default",
    "custom-template",
    "edited-webhook",
    "istio-1.23.3-default",
];

fn dir(name: &str) -> PathBuf {
    repo().join("test-data/import").join(name)
}

fn objects(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir(name).join("dump.yaml")).unwrap();
    read_objects(&text, name).unwrap()
}

fn run(name: &str) -> Import {
    import(&objects(name)).unwrap()
}

fn settings(import: &Import, rev: &str) -> Value {
    let found = import.revisions.iter().find(|r| r.revision == rev);
    found
        .unwrap_or_else(|| panic!("{rev} not imported: {import:?}"))
        .settings
        .clone()
}

#[test]
fn every_fixture_imports_as_expected() {
    for name in FIXTURES {
        let import = run(name);
        let expected = dir(name).join("expected");
        let read = |f: &str| std::fs::read_to_string(expected.join(f)).unwrap();
        for r in &import.revisions {
            let file = format!("{}.settings.yaml", r.revision);
            assert_eq!(settings_yaml(r).unwrap(), read(&file), "{name}/{file}");
        }
        let written = std::fs::read_dir(&expected).unwrap().count();
        assert_eq!(
            written,
            import.revisions.len() + 2,
            "{name}: stale expected files"
        );
        let manifests = manifests_yaml(&import, DEFAULT_MODULE).unwrap();
        assert_eq!(manifests, read("manifests.yaml"), "{name}/manifests.yaml");
        assert_eq!(summary(&import), read("summary.txt"), "{name}/summary.txt");
    }
}

#[test]
fn the_canary_dump_yields_both_versions_and_their_webhooks() {
    let import = run("canary");
    assert!(import.errors.is_empty(), "{:?}", import.errors);
    let old = settings(&import, "asm-1233-2");
    let new = settings(&import, "asm-1240-1");
    assert_eq!(
        (&old["istioVersion"], &new["istioVersion"]),
        (&json!("1.23.3"), &json!("1.24.0"))
    );
    assert_eq!(
        (&old["tags"], &old["defaultRevision"]),
        (&json!(["default"]), &json!(true))
    );
    assert_eq!(
        (&new["tags"], &new["defaultRevision"]),
        (&json!(["prod"]), &json!(false))
    );
    assert_eq!(old["values"]["global"]["tag"], "1.23.3-asm.2");
    assert_eq!(
        old["neverInjectSelector"][0]["matchExpressions"][0]["key"],
        "job-name"
    );
    assert_eq!(
        old["meshConfig"]["defaultConfig"]["holdApplicationUntilProxyStarts"],
        true
    );
    // Chart defaults are left out: only what the team changed is carried.
    assert_eq!(
        new["values"],
        json!({"global": {"hub": "gcr.io/gke-release/asm", "tag": "1.24.0-asm.1"}})
    );
    assert_eq!(new["meshConfig"], json!({}));
    let main = run("main-default");
    let d = settings(&main, "default");
    assert_eq!(
        (&d["istioVersion"], &d["enableNamespacesByDefault"]),
        (&json!("1.32"), &json!(true))
    );
}

#[test]
fn problems_are_named() {
    let custom = run("custom-template");
    let w = &custom.revisions[0].warnings;
    assert!(w[0].starts_with("customized sidecar template"), "{w:?}");
    assert!(
        w[0].contains("@@ line 168: 0 line(s)")
            && w[0].contains("+     # patched by the platform team"),
        "{w:?}"
    );
    assert!(
        w[1].contains("template `platform-debug` is not carried over"),
        "{w:?}"
    );
    let edited = run("edited-webhook");
    assert_eq!(
        edited.revisions.len(),
        1,
        "the untouched revision is still imported"
    );
    let (rev, e) = &edited.errors[0];
    assert_eq!(rev, "asm-1233-2");
    for part in [
        "istio-sidecar-injector-asm-1233-2",
        "rev.namespace.sidecar-injector.istio.io",
        "namespaceSelector",
        "team In [payments]",
    ] {
        assert!(e.contains(part), "{e}");
    }
}

/// The seed's revision with `edit` applied to its injector ConfigMap's `config`/`values`.
fn seed_with(edit: impl Fn(&mut Value)) -> Vec<Value> {
    let mut objs = objects("canary");
    let cm = objs
        .iter_mut()
        .find(|o| o["metadata"]["name"] == "istio-sidecar-injector-asm-1233-2")
        .unwrap();
    edit(cm);
    objs
}

fn errors_of(objs: &[Value]) -> String {
    match import(objs) {
        Ok(i) => i
            .errors
            .iter()
            .map(|(r, e)| format!("{r}: {e}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn what_cannot_be_carried_over_is_refused() {
    let config = |from: &'static str, to: &'static str| {
        move |cm: &mut Value| {
            let text = cm["data"]["config"].as_str().unwrap().replacen(from, to, 1);
            cm["data"]["config"] = json!(text);
        }
    };
    let cases: Vec<(Vec<Value>, &str)> = vec![
        (seed_with(config("injectedAnnotations:\n", "injectedAnnotations:\n  team: payments\n")),
         "asm-1233-2: ConfigMap istio-system/istio-sidecar-injector-asm-1233-2: injectedAnnotations [\"team\"] cannot be carried over"),
        (seed_with(config("defaultTemplates: [sidecar]", "defaultTemplates: [sidecar, spire]")),
         "defaultTemplates [\"sidecar\",\"spire\"] cannot be carried over"),
        (seed_with(|cm| {
            config("  sidecar: |\n", "  sidecar: |\n    # local\n")(cm);
            let values = cm["data"]["values"].as_str().unwrap().replace("1.23.3-asm.2", "latest");
            cm["data"]["values"] = json!(values);
        }),
         "the sidecar template is no supported version's and values.global.tag (latest) names no supported version"),
        (seed_with(|cm| cm["data"]["values"] = json!("{not json")),
         "ConfigMap istio-system/istio-sidecar-injector-asm-1233-2: `values` is not JSON"),
        (seed_with(|cm| { cm["data"].as_object_mut().unwrap().remove("config"); }),
         "istio-sidecar-injector-asm-1233-2: no `data.config` string"),
        (objects("canary").into_iter().filter(|o| o["metadata"]["name"] != "istio-sidecar-injector-asm-1240-1").collect(),
         "asm-1240-1: MutatingWebhookConfiguration istio-revision-tag-prod but no injector ConfigMap istio-sidecar-injector-asm-1240-1"),
        (objects("canary").into_iter().filter(|o| o["kind"] == "ConfigMap" || o["metadata"]["labels"]["istio.io/rev"] != "asm-1240-1").collect(),
         "asm-1240-1: ConfigMap istio-sidecar-injector-asm-1240-1 but no MutatingWebhookConfiguration"),
        (vec![json!({"kind": "Secret", "metadata": {"name": "x"}})],
         "no istio-sidecar-injector ConfigMap or MutatingWebhookConfiguration"),
    ];
    for (objs, want) in cases {
        let got = errors_of(&objs);
        assert!(got.contains(want), "want {want:?}, got {got:?}");
    }
    let err = read_objects("- a\n---\nx: [", "dump.yaml").unwrap_err();
    assert!(
        format!("{err:#}").contains("dump.yaml: document 1 item 1: not a Kubernetes object"),
        "{err:#}"
    );
    let err = read_objects("kind: List\nitems: []\n---\nx: [", "dump.yaml").unwrap_err();
    assert!(
        format!("{err:#}").contains("dump.yaml: document 2: not valid YAML"),
        "{err:#}"
    );
}

/// Round trip: a default 1.23.3 install (the ConfigMaps Istio's own tests read) imports to
/// settings that inject exactly what the suite's own defaults inject, case by case. This
/// compares the policy's output under both settings, not the goldens: issue 17 is still
/// making old versions match theirs, so golden passes are not asserted here.
#[test]
fn a_default_install_round_trips_through_the_conformance_suite() {
    let suite_dir = repo().join("../shared/conformance/istio-1.23.3");
    let (suite, _) = Suite::load(&suite_dir).unwrap();
    let imported = settings(&run("istio-1.23.3-default"), "default");
    assert_eq!(
        imported["values"],
        json!({"global": {"hub": "gcr.io/istio-testing", "tag": "latest"}})
    );
    let mut defaults = json!({"revision": "default"});
    for key in ["istioVersion", "values", "meshConfig"] {
        defaults[key] = imported[key].clone();
    }
    let ours = Suite {
        defaults,
        ..suite.clone()
    };
    let tmp = std::env::temp_dir().join(format!("revinject-import-{}", std::process::id()));
    let (a, b) = (tmp.join("suite"), tmp.join("imported"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let mut eval = NativeEvaluator;
    let mut compared = 0;
    for case in &suite.cases {
        let p1: Vec<String> = run_case(&suite, case, &mut eval, Some(&a))
            .into_iter()
            .map(|p| p.message)
            .collect();
        let p2: Vec<String> = run_case(&ours, case, &mut eval, Some(&b))
            .into_iter()
            .map(|p| p.message)
            .collect();
        assert_eq!(p1, p2, "case {}", case.name);
        compared += 1;
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&a).unwrap() {
        let entry = entry.unwrap();
        let theirs = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            theirs,
            std::fs::read(b.join(entry.file_name())).unwrap(),
            "{:?}",
            entry.file_name()
        );
        files += 1;
    }
    std::fs::remove_dir_all(&tmp).ok();
    assert!(
        compared > 50 && files > 50,
        "{compared} cases, {files} outputs compared"
    );
}

fn webhook_selects(
    hook: &Value,
    ns: &BTreeMap<String, String>,
    pod: &BTreeMap<String, String>,
) -> bool {
    let sel =
        |k: &str| -> LabelSelector { serde_json::from_value(hook[k].clone()).unwrap_or_default() };
    sel("namespaceSelector").matches(ns) && sel("objectSelector").matches(pod)
}

fn labels(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// `revinject check` over the imported revisions picks, on every label permutation, exactly
/// the revisions whose webhooks in the dump select the pod.
#[test]
fn check_agrees_with_the_dumps_webhooks() {
    for name in ["canary", "main-default", "istio-1.23.3-default"] {
        let objs = objects(name);
        let import = run(name);
        let mut eval = NativeEvaluator;
        let installed: Vec<Installed> = import
            .revisions
            .iter()
            .map(|r| Installed::new(&r.revision, r.settings.clone(), &mut eval).unwrap())
            .collect();
        let hooks: Vec<(String, &Value)> = objs
            .iter()
            .filter(|o| o["kind"] == "MutatingWebhookConfiguration")
            .filter_map(|o| {
                Some((
                    o["metadata"]["labels"]["istio.io/rev"]
                        .as_str()?
                        .to_string(),
                    o,
                ))
            })
            .flat_map(|(rev, o)| {
                o["webhooks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |w| (rev.clone(), w))
            })
            .collect();
        let names = [
            None,
            Some("default"),
            Some("asm-1233-2"),
            Some("asm-1240-1"),
            Some("prod"),
            Some("other"),
        ];
        let mut injected = 0;
        for injection in [None, Some("enabled"), Some("disabled")] {
            for ns_rev in names {
                for inject in [None, Some("true"), Some("false")] {
                    for pod_rev in names {
                        let mut ns =
                            labels(&[("istio-injection", injection), ("istio.io/rev", ns_rev)]);
                        let pod = labels(&[
                            ("sidecar.istio.io/inject", inject),
                            ("istio.io/rev", pod_rev),
                        ]);
                        let verdicts = check_pod(
                            &mut eval,
                            &installed,
                            &namespace_object("apps", &ns),
                            &pod_object("apps", &pod, &BTreeMap::new()),
                        )
                        .unwrap();
                        let mut by_policy: Vec<String> = verdicts
                            .iter()
                            .filter(|v| v.injected)
                            .map(|v| v.settings.clone())
                            .collect();
                        ns.insert("kubernetes.io/metadata.name".into(), "apps".into());
                        let mut by_dump: Vec<String> = hooks
                            .iter()
                            .filter(|(_, w)| webhook_selects(w, &ns, &pod))
                            .map(|(r, _)| r.clone())
                            .collect();
                        by_policy.sort();
                        by_dump.sort();
                        by_dump.dedup();
                        assert_eq!(by_policy, by_dump, "{name}: namespace {ns:?}, pod {pod:?}");
                        injected += by_policy.len();
                    }
                }
            }
        }
        assert!(injected > 10, "{name}: only {injected} injections");
    }
}

#[test]
fn the_cli_writes_the_files_and_fails_on_a_refused_revision() {
    let out = std::env::temp_dir().join(format!("revinject-import-cli-{}", std::process::id()));
    let cli = |fixture: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_revinject"))
            .args(["import", "-f"])
            .arg(dir(fixture).join("dump.yaml"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let ok = cli("canary");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for f in [
        "asm-1233-2.settings.yaml",
        "asm-1240-1.settings.yaml",
        "manifests.yaml",
    ] {
        assert!(Path::new(&out).join(f).exists(), "{f}");
    }
    let refused = cli("edited-webhook");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("REFUSED"));
    std::fs::remove_dir_all(&out).ok();
}
