//! `revinject kube-inject`: offline injection of manifests, like `istioctl kube-inject`, but
//! through `policy.wasm` so that the output is what the cluster's admission would produce.
//!
//! Each workload document's pod template becomes a CREATE AdmissionRequest for a Pod (the
//! conversion of [`crate::workload::to_pod`], shared with the conformance runner), the policy's
//! JSONPatch is applied, and the template's labels, annotations and spec are put back. Every
//! other document passes through unchanged, in order. Output is YAML (comments are not kept);
//! key order of the input is kept where the policy did not change a value.

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::input::read_settings;
use crate::runtime::{namespace_object, PolicyRuntime, RuntimeOptions, StaticNamespaces};
use crate::workload;
use revision_injector::revision::{INJECTION_LABEL, REV_LABEL};
use revision_injector::settings::Settings;

/// Arguments of `revinject kube-inject`.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeInjectArgs {
    /// The manifest (multi-document YAML, or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    pub file: String,
    /// Settings of the revision's policy instance (YAML or JSON); default: the default revision.
    #[arg(short = 's', long = "settings", value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// Labels of the workloads' namespaces, `k=v,...` (default: the labels that make the
    /// settings' revision select the pods).
    #[arg(long, value_name = "K=V,...")]
    pub namespace_labels: Option<String>,
    /// Write the result to FILE (atomically) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The policy module.
    #[arg(long, default_value = "policy.wasm")]
    pub policy: PathBuf,
}

/// Injects manifests with one revision's policy instance.
pub struct Injector<'a> {
    runtime: &'a PolicyRuntime,
    settings: Value,
    namespace_labels: BTreeMap<String, String>,
}

/// What injecting a manifest produced.
#[derive(Debug, Clone, Default)]
pub struct Injected {
    /// The output manifest (YAML documents separated by `---`).
    pub yaml: String,
    /// Admission warnings, prefixed with the document they concern.
    pub warnings: Vec<String>,
    /// How many pod templates the policy changed.
    pub mutated: usize,
}

/// The namespace labels under which the revision of `settings` selects a pod:
/// `istio-injection=enabled` for the default revision, `istio.io/rev=<revision>` otherwise.
pub fn selecting_labels(settings: &Settings) -> BTreeMap<String, String> {
    let revision = settings.revision_name();
    if revision == "default" {
        BTreeMap::from([(INJECTION_LABEL.to_string(), "enabled".to_string())])
    } else {
        BTreeMap::from([(REV_LABEL.to_string(), revision.to_string())])
    }
}

/// Parse `k=v,k=v` (an empty string is no labels); `what` names the option in errors.
pub fn parse_labels(text: &str, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("{what}: {item:?} is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        revision_injector::selector::validate_key(k)
            .map_err(|e| anyhow!("{what}: key {k:?}: {e}"))?;
        revision_injector::selector::validate_value(v)
            .map_err(|e| anyhow!("{what}: value {v:?} of {k:?}: {e}"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

impl<'a> Injector<'a> {
    /// Check `settings` with the policy's own `validate_settings`; `namespace_labels`
    /// defaults to [`selecting_labels`].
    pub fn new(
        runtime: &'a PolicyRuntime,
        settings: Value,
        namespace_labels: Option<BTreeMap<String, String>>,
    ) -> anyhow::Result<Injector<'a>> {
        let (valid, message) = runtime
            .validate_settings(&settings)
            .context("cannot validate the settings")?;
        if !valid {
            bail!("invalid settings: {}", message.unwrap_or_default());
        }
        let parsed = Settings::from_value(&settings).map_err(|e| anyhow!(e))?;
        let namespace_labels = namespace_labels.unwrap_or_else(|| selecting_labels(&parsed));
        Ok(Injector {
            runtime,
            settings,
            namespace_labels,
        })
    }

    /// Inject every workload document of `text`; nothing is returned unless all succeed.
    pub fn inject(&self, text: &str) -> anyhow::Result<Injected> {
        let mut out = Injected::default();
        let mut rendered = Vec::new();
        for (index, document) in parse_documents(text)? {
            let label = format!("document {index}");
            let result = self
                .document(&document, &label, &mut out)
                .with_context(|| describe(&label, &document))?;
            rendered.push(
                serde_norway::to_string(&result)
                    .with_context(|| format!("{label}: cannot write it as YAML"))?,
            );
        }
        out.yaml = rendered.join("---\n");
        Ok(out)
    }

    fn document(
        &self,
        document: &serde_norway::Value,
        label: &str,
        out: &mut Injected,
    ) -> anyhow::Result<serde_norway::Value> {
        let serde_norway::Value::Mapping(map) = document else {
            bail!("not a Kubernetes object (a map)");
        };
        let kind = map
            .get("kind")
            .and_then(serde_norway::Value::as_str)
            .unwrap_or("");
        if kind == "List" {
            let mut list = document.clone();
            if let Some(serde_norway::Value::Sequence(items)) = list.get_mut("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    let item_label = format!("{label} item {}", i + 1);
                    *item = self
                        .document(item, &item_label, out)
                        .with_context(|| describe(&item_label, item))?;
                }
            }
            return Ok(list);
        }
        if !workload::WORKLOAD_KINDS.contains(&kind) {
            return Ok(document.clone());
        }
        let original: Value =
            serde_json::to_value(document).map_err(|e| anyhow!("cannot be read as JSON: {e}"))?;
        let Some(injected) = self.workload(&original, label, out)? else {
            return Ok(document.clone());
        };
        out.mutated += 1;
        Ok(reorder_like(document, &injected))
    }

    /// The workload with its pod template injected; `None` when the policy changes nothing.
    fn workload(
        &self,
        doc: &Value,
        label: &str,
        out: &mut Injected,
    ) -> anyhow::Result<Option<Value>> {
        let pod = workload::to_pod(doc)?;
        let namespace = workload::request_namespace(doc);
        let mut request = workload::admission_request(
            &format!("revinject-kube-inject-{}", label.replace(' ', "-")),
            &namespace,
            &pod,
        );
        request["userInfo"] = json!({"username": "revinject-kube-inject"});
        let host = StaticNamespaces(BTreeMap::from([(
            namespace.clone(),
            namespace_object(&namespace, &self.namespace_labels),
        )]));
        let response = self
            .runtime
            .admission_response(&request, &self.settings, &host)?;
        for w in response.warnings.iter().flatten() {
            out.warnings.push(format!("{label}: {w}"));
        }
        if !response.allowed {
            let message = response
                .status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_else(|| "(no message)".to_string());
            bail!("the policy rejected the pod: {message}");
        }
        if response.patch.is_none() {
            return Ok(None);
        }
        let patched = response.patched_object(&pod)?;
        Ok(Some(put_back(doc, &patched)?))
    }
}

/// "document 2 (Deployment web)" for error messages.
fn describe(label: &str, document: &serde_norway::Value) -> String {
    let kind = document.get("kind").and_then(serde_norway::Value::as_str);
    let name = document
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(serde_norway::Value::as_str);
    match (kind, name) {
        (Some(k), Some(n)) => format!("{label} ({k} {n})"),
        (Some(k), None) => format!("{label} ({k})"),
        _ => label.to_string(),
    }
}

/// Put the injected pod's labels, annotations and spec back into the workload document.
fn put_back(doc: &Value, patched: &Value) -> anyhow::Result<Value> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "Pod" {
        return Ok(patched.clone());
    }
    let pointer = if kind == "CronJob" {
        "/spec/jobTemplate/spec/template"
    } else {
        "/spec/template"
    };
    let mut out = doc.clone();
    let template = out
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("no pod template at `{}`", pointer.replace('/', ".")))?;
    let had_hash = template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get("pod-template-hash"))
        .is_some();
    let metadata = template
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| anyhow!("the pod template's metadata is not a map"))?;
    for key in ["labels", "annotations"] {
        let mut value = patched.pointer(&format!("/metadata/{key}")).cloned();
        if key == "labels" && !had_hash {
            // Added by the Pod conversion to mimic a ReplicaSet's pod, not part of the template.
            if let Some(labels) = value.as_mut().and_then(Value::as_object_mut) {
                labels.remove("pod-template-hash");
            }
        }
        match value {
            Some(v) if v.as_object().is_some_and(|m| !m.is_empty()) => {
                metadata.insert(key.to_string(), v);
            }
            _ => {
                metadata.remove(key);
            }
        }
    }
    match patched.get("spec") {
        Some(spec) => template.insert("spec".to_string(), spec.clone()),
        None => template.remove("spec"),
    };
    Ok(out)
}

/// `new` as YAML, with the key order of `original` wherever a map exists in both (new keys
/// follow, sorted) and `original`'s own scalars where the value did not change.
pub fn reorder_like(original: &serde_norway::Value, new: &Value) -> serde_norway::Value {
    use serde_norway::Value as Y;
    match (original, new) {
        (Y::Mapping(old), Value::Object(new_map)) => {
            let mut out = serde_norway::Mapping::new();
            for (k, v) in old {
                if let Some(nv) = k.as_str().and_then(|key| new_map.get(key)) {
                    out.insert(k.clone(), reorder_like(v, nv));
                }
            }
            for (k, nv) in new_map {
                if !old.contains_key(k.as_str()) {
                    out.insert(Y::String(k.clone()), to_yaml(nv));
                }
            }
            Y::Mapping(out)
        }
        (Y::Sequence(old), Value::Array(items)) => Y::Sequence(
            items
                .iter()
                .enumerate()
                .map(|(i, nv)| match old.get(i) {
                    Some(ov) => reorder_like(ov, nv),
                    None => to_yaml(nv),
                })
                .collect(),
        ),
        _ if serde_json::to_value(original).ok().as_ref() == Some(new) => original.clone(),
        _ => to_yaml(new),
    }
}

fn to_yaml(v: &Value) -> serde_norway::Value {
    serde_norway::to_value(v).unwrap_or(serde_norway::Value::Null)
}

/// The non-empty documents of a manifest with their 1-based index: a stream of JSON values
/// when the text starts with `{` or `[`, otherwise YAML documents separated by `---` lines
/// (parts holding only blank lines and comments are not documents and are not counted).
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<(usize, serde_norway::Value)>> {
    let trimmed = text.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (i, item) in stream.enumerate() {
            let value = item.map_err(|e| anyhow!("document {}: invalid JSON: {e}", i + 1))?;
            out.push((i + 1, to_yaml(&value)));
        }
        return Ok(out);
    }
    let parts = split_yaml(text);
    let meaningful = parts.iter().filter(|p| {
        p.lines()
            .map(str::trim)
            .any(|l| !l.is_empty() && !l.starts_with('#'))
    });
    for (i, part) in meaningful.enumerate() {
        let value: serde_norway::Value = serde_norway::from_str(part)
            .map_err(|e| anyhow!("document {}: invalid YAML: {e}", i + 1))?;
        if !value.is_null() {
            out.push((i + 1, value));
        }
    }
    Ok(out)
}

/// Split on document markers (`---` at the start of a line, alone or followed by a space);
/// a `...` end marker line is dropped.
fn split_yaml(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker {
            docs.push(String::new());
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                if let Some(doc) = docs.last_mut() {
                    doc.push_str(rest);
                    doc.push('\n');
                }
            }
        } else if line.trim_end() != "..." {
            if let Some(doc) = docs.last_mut() {
                doc.push_str(line);
                doc.push('\n');
            }
        }
    }
    docs
}

/// Write `contents` to `path` through a temporary file in the same directory and a rename,
/// so that a reader never sees a half-written file.
pub fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.revinject-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_then_rename(&tmp, path, contents);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(tmp, path)
        .with_context(|| format!("cannot move the output into {}", path.display()))
}

/// `revinject kube-inject`.
pub fn run(args: &KubeInjectArgs) -> anyhow::Result<()> {
    let text = if args.file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the manifest from stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file))?
    };
    let settings = read_settings(args.settings.as_deref())?;
    let labels = args
        .namespace_labels
        .as_deref()
        .map(|l| parse_labels(l, "--namespace-labels"))
        .transpose()?;
    let options = RuntimeOptions {
        guest_logs: false,
        ..RuntimeOptions::default()
    };
    let runtime = PolicyRuntime::load(&args.policy, &options)?;
    let injector = Injector::new(&runtime, settings, labels)?;
    let source = if args.file == "-" {
        "stdin"
    } else {
        &args.file
    };
    let injected = injector
        .inject(&text)
        .with_context(|| format!("cannot inject {source}"))?;
    for w in &injected.warnings {
        eprintln!("revinject: warning: {w}");
    }
    match &args.output {
        Some(path) => write_atomically(path, &injected.yaml)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(injected.yaml.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_keep_their_index() {
        let text = "a: 1\n---\n# only a comment\n--- \nb: 2\n...\n---\nc: [\n";
        let err = parse_documents(text).unwrap_err().to_string();
        assert!(err.starts_with("document 3: invalid YAML"), "{err}");
        let docs = parse_documents("---\na: 1\n---\n\n---\nb: 2\n---\n~\n").unwrap();
        let indexes: Vec<usize> = docs.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [1, 2]);
    }

    #[test]
    fn json_stream_is_accepted() {
        let docs = parse_documents("{\"kind\": \"Service\"}\n{\"kind\": \"Pod\"}").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].1.get("kind").and_then(|k| k.as_str()), Some("Pod"));
        let err = parse_documents("{\"a\": 1} {\"b\": ")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("document 2: invalid JSON"), "{err}");
    }

    #[test]
    fn reorder_keeps_original_order_and_appends_new_keys() {
        let original: serde_norway::Value =
            serde_norway::from_str("z: 1\na: x\nm: {q: 1, b: 2}\n").unwrap();
        let new = json!({"a": "x", "m": {"b": 3, "q": 1, "c": 4}, "z": 1, "new": true});
        let out = serde_norway::to_string(&reorder_like(&original, &new)).unwrap();
        assert_eq!(out, "z: 1\na: x\nm:\n  q: 1\n  b: 3\n  c: 4\nnew: true\n");
    }

    #[test]
    fn put_back_strips_the_conversion_label() {
        let doc = json!({"kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}});
        let patched = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "fake", "x": "y"},
            "annotations": {"a": "b"}, "generateName": "web-fake-"}, "spec": {"containers": [{"name": "c"}]}});
        let out = put_back(&doc, &patched).unwrap();
        assert_eq!(
            out["spec"]["template"],
            json!({"metadata": {"labels": {"app": "web", "x": "y"}, "annotations": {"a": "b"}},
                   "spec": {"containers": [{"name": "c"}]}})
        );
        assert_eq!(out["metadata"], json!({"name": "web"}));
    }

    #[test]
    fn labels_are_parsed_and_checked() {
        let l = parse_labels("istio.io/rev=canary, a=b", "--x").unwrap();
        assert_eq!(l.len(), 2);
        assert!(parse_labels("novalue", "--x")
            .unwrap_err()
            .to_string()
            .contains("--x"));
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = std::env::temp_dir().join(format!("revinject-ki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.yaml");
        write_atomically(&path, "a: 1\n").unwrap();
        write_atomically(&path, "b: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b: 2\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
