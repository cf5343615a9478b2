//! `revinject import`: policy settings for every revision an istiod install already runs, read
//! from `kubectl get configmap,mutatingwebhookconfiguration -A -o yaml`.
//!
//! Per revision: the injector ConfigMap `istio-sidecar-injector[-<rev>]` (`config`, `values`),
//! the mesh ConfigMap `istio[-<rev>]`, the webhook configuration `istio-sidecar-injector[-<rev>]`
//! and the tag webhooks `istio-revision-tag-<tag>`. What the policy cannot reproduce is a
//! warning (carried over with a caveat) or an error (the revision is refused); see [`Problems`].

mod reference;

use anyhow::{anyhow, bail, Context as _};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::manifest::{policy_yaml, DEFAULT_MODULE};
use revision_injector::selector::LabelSelector;
use revision_injector::settings::Settings;

/// Arguments of `revinject import`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Errors (the revision is refused, exit status 1): a sidecar template that is neither a supported \
version's nor readable through values.global.tag; non-empty injectedAnnotations; defaultTemplates \
other than [sidecar]; a webhook whose selectors differ from the chart's (or a webhook the chart \
does not write, or one it writes missing); an injector ConfigMap without webhooks, or webhooks \
without an injector ConfigMap.
Warnings (carried over with a caveat): a customized sidecar template (with a diff against the \
version named by values.global.tag); templates the chart does not ship; no mesh ConfigMap.
Bad input (not YAML, an object without kind/name, missing keys, `values` not JSON) is an error \
naming the object. Other kinds are ignored.")]
pub struct ImportArgs {
    /// `kubectl get configmap,mutatingwebhookconfiguration -A -o yaml` output (a List or
    /// multi-document YAML); repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Write `<revision>.settings.yaml` and `manifests.yaml` here (default: all on stdout).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The policy module URI in the ClusterAdmissionPolicies.
    #[arg(long, default_value = DEFAULT_MODULE)]
    pub module: String,
}

/// One imported revision.
#[derive(Debug, Clone)]
pub struct Imported {
    /// `default` for the default revision.
    pub revision: String,
    pub settings: Value,
    /// What was carried over besides the version (`policy`, `values: global.hub` …).
    pub carried: Vec<String>,
    pub warnings: Vec<String>,
}

/// The outcome: revisions imported, and revisions refused with why.
#[derive(Debug, Default)]
pub struct Import {
    pub revisions: Vec<Imported>,
    /// (revision, error)
    pub errors: Vec<(String, String)>,
}

/// A Kubernetes object of the dump.
struct Object<'a> {
    kind: &'a str,
    name: &'a str,
    namespace: &'a str,
    value: &'a Value,
}

impl Object<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.value.pointer("/metadata/labels")?.get(key)?.as_str()
    }
    fn describe(&self) -> String {
        match self.namespace {
            "" => format!("{} {}", self.kind, self.name),
            ns => format!("{} {ns}/{}", self.kind, self.name),
        }
    }
    fn data(&self, key: &str) -> anyhow::Result<&str> {
        self.value
            .pointer("/data")
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: no `data.{key}` string", self.describe()))
    }
}

/// Every object of a dump: multi-document YAML, each a `List` or an object.
pub fn read_objects(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = Value::deserialize(doc)
            .with_context(|| format!("{source}: document {}: not valid YAML", i + 1))?;
        let items = match &doc {
            Value::Null => continue,
            v if v.get("kind").and_then(Value::as_str) == Some("List") => v
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("{source}: document {}: a List without items", i + 1))?
                .clone(),
            v => vec![v.clone()],
        };
        for (j, item) in items.into_iter().enumerate() {
            let named = item.get("kind").and_then(Value::as_str).is_some()
                && item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_some();
            if !named {
                bail!(
                    "{source}: document {} item {}: not a Kubernetes object (no kind or metadata.name)",
                    i + 1,
                    j + 1
                );
            }
            out.push(item);
        }
    }
    Ok(out)
}

fn object(v: &Value) -> Object<'_> {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
    Object {
        kind: s("/kind"),
        name: s("/metadata/name"),
        namespace: s("/metadata/namespace"),
        value: v,
    }
}

const INJECTOR: &str = "istio-sidecar-injector";
const TAG_PREFIX: &str = "istio-revision-tag-";
const WEBHOOK_SUFFIX: &str = "sidecar-injector.istio.io";
/// The templates Istio's chart ships beside `sidecar` (not reproduced: only `sidecar` is).
const CHART_TEMPLATES: [&str; 6] = [
    "sidecar",
    "gateway",
    "grpc-simple",
    "grpc-agent",
    "waypoint",
    "kube-gateway",
];

/// `default` for `""`.
fn rev_name(rev: &str) -> String {
    if rev.is_empty() {
        "default".into()
    } else {
        rev.into()
    }
}

/// The revision of an injector object named `istio-sidecar-injector[-<rev>]`.
fn injector_revision(name: &str) -> Option<String> {
    match name.strip_prefix(INJECTOR)? {
        "" => Some("default".into()),
        rest => rest.strip_prefix('-').map(str::to_string),
    }
}

/// Import every revision of the dump's objects.
pub fn import(objects: &[Value]) -> anyhow::Result<Import> {
    let objects: Vec<Object> = objects.iter().map(object).collect();
    let mut injectors = BTreeMap::new();
    let mut webhooks: BTreeMap<String, Vec<&Object>> = BTreeMap::new();
    for o in &objects {
        match o.kind {
            "ConfigMap" => {
                if let Some(rev) = injector_revision(o.name) {
                    injectors.insert(rev, o);
                }
            }
            "MutatingWebhookConfiguration"
                if o.name.starts_with(INJECTOR) || o.name.starts_with(TAG_PREFIX) =>
            {
                let rev = o
                    .label("istio.io/rev")
                    .map(rev_name)
                    .or_else(|| injector_revision(o.name))
                    .ok_or_else(|| anyhow!("{}: no istio.io/rev label", o.describe()))?;
                webhooks.entry(rev).or_default().push(o);
            }
            _ => {}
        }
    }
    if injectors.is_empty() && webhooks.is_empty() {
        bail!("no istio-sidecar-injector ConfigMap or MutatingWebhookConfiguration in the input");
    }
    let mut out = Import::default();
    let revisions: BTreeSet<&String> = injectors.keys().chain(webhooks.keys()).collect();
    for rev in revisions {
        let hooks = webhooks.get(rev).map(Vec::as_slice).unwrap_or_default();
        let result = match injectors.get(rev) {
            None => Err(anyhow!(
                "{} but no injector ConfigMap {INJECTOR}{}: its configuration is unknown",
                hooks.iter().map(|o| o.describe()).collect::<Vec<_>>().join(", "),
                if rev == "default" { String::new() } else { format!("-{rev}") }
            )),
            Some(_) if hooks.is_empty() => Err(anyhow!(
                "ConfigMap {INJECTOR}{} but no MutatingWebhookConfiguration: istiod injects nothing for it, the policy would",
                if rev == "default" { String::new() } else { format!("-{rev}") }
            )),
            Some(cm) => import_revision(rev, cm, hooks, &objects),
        };
        match result {
            Ok(imported) => out.revisions.push(imported),
            Err(e) => out.errors.push((rev.clone(), format!("{e:#}"))),
        }
    }
    Ok(out)
}

fn import_revision(
    rev: &str,
    cm: &Object,
    hooks: &[&Object],
    objects: &[Object],
) -> anyhow::Result<Imported> {
    let (mut carried, mut warnings) = (Vec::new(), Vec::new());
    let what = cm.describe();
    let config: Value = serde_norway::from_str(cm.data("config")?)
        .with_context(|| format!("{what}: `config` is not YAML"))?;
    let values: Value = serde_json::from_str(cm.data("values")?)
        .with_context(|| format!("{what}: `values` is not JSON"))?;
    if !config.is_object() || !values.is_object() {
        bail!("{what}: `config` and `values` must be maps");
    }
    // The version: the sidecar template, else values.global.tag.
    let template = config
        .pointer("/templates/sidecar")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{what}: `config` has no templates.sidecar"))?;
    let tag = values.pointer("/global/tag").and_then(Value::as_str);
    let tag_version = tag.and_then(reference::version_from_tag);
    let (reference, version) = match reference::by_template(template) {
        Some(r) => {
            let v = tag_version.filter(|v| v.minor == r.version().minor);
            (r, v.unwrap_or_else(|| r.version()))
        }
        None => {
            let v = tag_version.ok_or_else(|| {
                anyhow!("{what}: the sidecar template is no supported version's and values.global.tag ({}) names no supported version; {}",
                    tag.unwrap_or("unset"), revision_injector::versions::SUPPORTED)
            })?;
            let r = reference::by_minor(v.minor)
                .ok_or_else(|| anyhow!("{what}: no reference for {v}"))?;
            let diff = reference::line_diff(r.template, template, 6).join("\n    ");
            warnings.push(format!("customized sidecar template: not carried over; the policy injects Istio {v}'s chart template (read from values.global.tag), which differs:\n    {diff}"));
            (r, v)
        }
    };
    check_config(&what, &config, &mut warnings)?;
    // Settings from the webhooks.
    let mut settings = Map::new();
    settings.insert("revision".into(), json!(rev));
    let (tags, default, auto) = webhook_flags(hooks);
    settings.insert("tags".into(), json!(tags));
    settings.insert("defaultRevision".into(), json!(default));
    settings.insert("enableNamespacesByDefault".into(), json!(auto));
    if cm.namespace != "istio-system" && !cm.namespace.is_empty() {
        settings.insert("istioNamespace".into(), json!(cm.namespace));
        carried.push(format!("istioNamespace {}", cm.namespace));
    }
    for key in ["policy", "alwaysInjectSelector", "neverInjectSelector"] {
        let v = match config.get(key) {
            None | Some(Value::Null) if key != "policy" => json!([]),
            Some(v) => v.clone(),
            None => bail!("{what}: `config` has no `policy`"),
        };
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            carried.push(key.to_string());
        }
        settings.insert(key.into(), v);
    }
    settings.insert("istioVersion".into(), json!(version.to_string()));
    let values = import_values(rev, &values, reference, version);
    if let Some(v) = &values {
        carried.push(format!(
            "values: {}",
            reference::leaf_paths(v, 3).join(", ")
        ));
    }
    settings.insert("values".into(), values.unwrap_or_else(|| json!({})));
    let mesh = import_mesh(rev, cm.namespace, objects, &mut warnings)?;
    if let Some(m) = &mesh {
        carried.push(format!(
            "meshConfig: {}",
            reference::leaf_paths(m, 2).join(", ")
        ));
    }
    settings.insert("meshConfig".into(), mesh.unwrap_or_else(|| json!({})));
    let settings = Value::Object(settings);
    let parsed = Settings::from_value(&settings).map_err(|e| anyhow!("{what}: {e}"))?;
    revision_injector::admission::validate_settings(&parsed)
        .map_err(|e| anyhow!("{what}: the imported settings are invalid: {e}"))?;
    compare_webhooks(&parsed, hooks)?;
    Ok(Imported {
        revision: rev.to_string(),
        settings,
        carried,
        warnings,
    })
}

/// The `config` keys the policy cannot carry: refused (`Err`) or warned about.
fn check_config(what: &str, config: &Value, warnings: &mut Vec<String>) -> anyhow::Result<()> {
    if let Some(a) = config
        .get("injectedAnnotations")
        .and_then(Value::as_object)
        .filter(|a| !a.is_empty())
    {
        let keys: Vec<&String> = a.keys().collect();
        bail!("{what}: injectedAnnotations {keys:?} cannot be carried over (the policy adds no extra annotations)");
    }
    match config.get("defaultTemplates") {
        None | Some(Value::Null) => {}
        Some(v) if *v == json!(["sidecar"]) || *v == json!([]) => {}
        Some(v) => bail!("{what}: defaultTemplates {v} cannot be carried over: the policy renders only the `sidecar` template"),
    }
    if let Some(t) = config.get("templates").and_then(Value::as_object) {
        for name in t.keys().filter(|n| !CHART_TEMPLATES.contains(&n.as_str())) {
            warnings.push(format!("template `{name}` is not carried over (the policy renders only `sidecar`; pods selecting `{name}` with inject.istio.io/templates do not get it)"));
        }
    }
    Ok(())
}

/// (tags, default revision, enableNamespacesByDefault) from the webhooks' names.
fn webhook_flags(hooks: &[&Object]) -> (Vec<String>, bool, bool) {
    let mut tags = BTreeSet::new();
    let (mut default, mut auto) = (false, false);
    for h in hooks {
        if let Some(tag) = h.label("istio.io/tag") {
            tags.insert(tag.to_string());
            default |= tag == "default";
        }
        for name in webhook_names(h) {
            default |= name == "namespace" || name == "object";
            auto |= name == "auto";
        }
    }
    (tags.into_iter().collect(), default, auto)
}

/// The short names (`rev.namespace`, `auto` …) of a configuration's webhooks.
fn webhook_names<'a>(h: &'a Object) -> Vec<&'a str> {
    let list = h.value.get("webhooks").and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(|w| w.get("name").and_then(Value::as_str))
        .map(|n| {
            n.strip_suffix(WEBHOOK_SUFFIX)
                .unwrap_or(n)
                .trim_end_matches('.')
        })
        .collect()
}

/// A selector as a comparable set of `key op values` requirements.
fn canonical(s: &LabelSelector) -> BTreeSet<String> {
    let labels = s.match_labels.iter().map(|(k, v)| format!("{k} In [{v}]"));
    let exprs = s.match_expressions.iter().map(|r| {
        let mut v = r.values.clone();
        v.sort();
        format!("{} {:?} [{}]", r.key, r.operator, v.join(","))
    });
    labels.chain(exprs).collect()
}

/// Every webhook of the dump must be one the policy reproduces, with the same selectors, and
/// the reverse.
fn compare_webhooks(settings: &Settings, hooks: &[&Object]) -> anyhow::Result<()> {
    let mut expected: BTreeMap<String, _> = revision_injector::revision::webhooks(settings)
        .into_iter()
        .map(|w| (w.name.clone(), w))
        .collect();
    for h in hooks {
        let tag = h.label("istio.io/tag");
        for w in h
            .value
            .get("webhooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let full = w.get("name").and_then(Value::as_str).unwrap_or("");
            let short = full
                .strip_suffix(WEBHOOK_SUFFIX)
                .unwrap_or(full)
                .trim_end_matches('.');
            let key = match tag {
                Some(t) if short.starts_with("rev.") => format!("{short} (tag {t})"),
                _ => short.to_string(),
            };
            let want = expected.remove(&key).ok_or_else(|| {
                anyhow!(
                    "{}: webhook {full:?} is not one Istio's chart writes for this revision",
                    h.describe()
                )
            })?;
            for (field, wanted) in [
                ("namespaceSelector", &want.namespace_selector),
                ("objectSelector", &want.object_selector),
            ] {
                let have: LabelSelector = match w.get(field) {
                    None | Some(Value::Null) => LabelSelector::default(),
                    Some(v) => serde_json::from_value(v.clone())
                        .with_context(|| format!("{}: webhook {full}: {field}", h.describe()))?,
                };
                let (have, wanted) = (canonical(&have), canonical(wanted));
                if have != wanted {
                    let extra: Vec<_> = have.difference(&wanted).collect();
                    let missing: Vec<_> = wanted.difference(&have).collect();
                    bail!("{}: webhook {full}: {field} differs from the chart's (hand-edited?): has {extra:?}, the chart has {missing:?}; the policy would select other pods", h.describe());
                }
            }
        }
    }
    if let Some(name) = expected.keys().next() {
        bail!("webhook {name} is missing from the revision's MutatingWebhookConfigurations (hand-edited?)");
    }
    Ok(())
}

/// The ConfigMap's values minus the chart's defaults, and minus what other settings carry.
fn import_values(
    rev: &str,
    values: &Value,
    reference: &reference::Reference,
    version: revision_injector::versions::IstioVersion,
) -> Option<Value> {
    let mut defaults = reference.values();
    let revision = if rev == "default" { "" } else { rev };
    defaults["revision"] = json!(revision);
    // The reference values pin Istio's test registry; the policy's own defaults stand for a
    // release's hub and tag (below), so an install's hub and tag are always compared with those.
    if let Some(global) = defaults.get_mut("global").and_then(Value::as_object_mut) {
        global.remove("hub");
        global.remove("tag");
    }
    let mut v = reference::diff(values, &defaults)?;
    let remove = |v: &mut Value, path: &[&str], unless: Option<&str>| {
        let (last, parents) = path.split_last().unwrap_or((&"", &[]));
        let parent = parents.iter().try_fold(&mut *v, |v, k| v.get_mut(*k));
        if let Some(map) = parent.and_then(Value::as_object_mut) {
            if unless.is_none() || map.get(*last).and_then(Value::as_str) == unless {
                map.remove(*last);
            }
        }
    };
    // `config` carries these (the chart renders it from them); the policy's own defaults
    // stand for hub and tag.
    remove(&mut v, &["global", "proxy", "autoInject"], None);
    for key in [
        "alwaysInjectSelector",
        "neverInjectSelector",
        "enableNamespacesByDefault",
        "templates",
        "defaultTemplates",
        "injectedAnnotations",
    ] {
        remove(&mut v, &["sidecarInjectorWebhook", key], None);
    }
    remove(
        &mut v,
        &["global", "hub"],
        Some(revision_injector::values::helm::DEFAULT_HUB),
    );
    if let Some(tag) = version.release_tag() {
        remove(&mut v, &["global", "tag"], Some(&tag));
    }
    prune(&mut v);
    (!v.as_object()?.is_empty()).then_some(v)
}

/// Drop maps left empty.
fn prune(v: &mut Value) {
    if let Some(map) = v.as_object_mut() {
        map.values_mut().for_each(prune);
        map.retain(|_, v| v.as_object().is_none_or(|m| !m.is_empty()));
    }
}

/// The mesh ConfigMap `istio[-<rev>]` minus Istio's default mesh.
fn import_mesh(
    rev: &str,
    namespace: &str,
    objects: &[Object],
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Value>> {
    let name = if rev == "default" {
        "istio".to_string()
    } else {
        format!("istio-{rev}")
    };
    let Some(cm) = objects
        .iter()
        .find(|o| o.kind == "ConfigMap" && o.name == name && o.namespace == namespace)
    else {
        warnings.push(format!(
            "no mesh ConfigMap {namespace}/{name}: Istio's default mesh assumed"
        ));
        return Ok(None);
    };
    let mesh: Value = serde_norway::from_str(cm.data("mesh")?)
        .with_context(|| format!("{}: `mesh` is not YAML", cm.describe()))?;
    let mut default: Value = serde_norway::from_str(reference::DEFAULT_MESH).unwrap_or_default();
    let istiod = if rev == "default" {
        "istiod".to_string()
    } else {
        format!("istiod-{rev}")
    };
    default["defaultConfig"]["discoveryAddress"] = json!(format!("{istiod}.{namespace}.svc:15012"));
    default["rootNamespace"] = json!(namespace);
    Ok(reference::diff(&mesh, &default))
}

/// A settings file: the keys in the README's order.
pub fn settings_yaml(imported: &Imported) -> anyhow::Result<String> {
    let mut out = serde_norway::Mapping::new();
    let order = [
        "revision",
        "tags",
        "defaultRevision",
        "enableNamespacesByDefault",
        "policy",
        "alwaysInjectSelector",
        "neverInjectSelector",
        "istioNamespace",
        "istioVersion",
        "values",
        "meshConfig",
    ];
    for key in order {
        if let Some(v) = imported.settings.get(key) {
            out.insert(key.into(), serde_norway::to_value(v)?);
        }
    }
    let mut text = format!(
        "# imported by revinject import: revision {}\n",
        imported.revision
    );
    for w in &imported.warnings {
        text.push_str(&format!("# WARNING: {}\n", w.replace('\n', "\n#   ")));
    }
    text.push_str(&serde_norway::to_string(&out)?);
    Ok(text)
}

/// Every imported revision's ClusterAdmissionPolicy.
pub fn manifests_yaml(import: &Import, module: &str) -> anyhow::Result<String> {
    let docs: anyhow::Result<Vec<String>> = import
        .revisions
        .iter()
        .map(|r| policy_yaml(&r.settings, module))
        .collect();
    Ok(docs?.join("---\n"))
}

/// The table printed after an import, then the warnings and errors.
pub fn summary(import: &Import) -> String {
    let mut rows =
        vec![["REVISION", "VERSION", "TAGS", "DEFAULT", "CARRIED OVER"].map(String::from)];
    for r in &import.revisions {
        let s = |k: &str| r.settings.get(k).cloned().unwrap_or_default();
        let tags: Vec<String> = serde_json::from_value(s("tags")).unwrap_or_default();
        let default = match (
            s("defaultRevision").as_bool(),
            s("enableNamespacesByDefault").as_bool(),
        ) {
            (Some(true), Some(true)) => "yes (+auto)",
            (Some(true), _) => "yes",
            _ => "no",
        };
        let carried = if r.carried.is_empty() {
            "-".to_string()
        } else {
            r.carried.join("; ")
        };
        let version = s("istioVersion").as_str().unwrap_or("").to_string();
        let tags = if tags.is_empty() {
            "-".to_string()
        } else {
            tags.join(",")
        };
        rows.push([r.revision.clone(), version, tags, default.into(), carried]);
    }
    for (rev, _) in &import.errors {
        rows.push([
            rev.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "REFUSED (error below)".into(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    for r in &import.revisions {
        for w in &r.warnings {
            out.push_str(&format!("warning: {}: {w}\n", r.revision));
        }
    }
    for (rev, e) in &import.errors {
        out.push_str(&format!("error: {rev}: {e}\n"));
    }
    out
}

/// Read, import and write (or print) everything.
pub fn run(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let mut objects = Vec::new();
    for f in &args.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        objects.extend(read_objects(&text, &f.display().to_string())?);
    }
    let import = import(&objects)?;
    let manifests = manifests_yaml(&import, &args.module)?;
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for r in &import.revisions {
                write(
                    &dir.join(format!("{}.settings.yaml", r.revision)),
                    &settings_yaml(r)?,
                )?;
            }
            write(&dir.join("manifests.yaml"), &manifests)?;
            print!("{}", summary(&import));
        }
        None => {
            for r in &import.revisions {
                println!(
                    "# ===== {}.settings.yaml =====\n---\n{}",
                    r.revision,
                    settings_yaml(r)?
                );
            }
            println!("# ===== manifests.yaml =====\n---\n{manifests}");
            eprint!("{}", summary(&import));
        }
    }
    Ok(if import.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
