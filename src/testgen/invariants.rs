//! The invariants every answer must satisfy (see the parent module), whichever way the
//! policy is run: natively ([`native`]) or through `policy.wasm` (`revinject fuzz`).

use serde_json::{json, Value};

use super::{canary_settings, Case};

/// An answer, whichever way the policy was run.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub accepted: bool,
    pub message: Option<String>,
    pub code: Option<u16>,
    /// The mutated pod (already checked to equal the original with the patch applied, when
    /// the caller builds patches).
    pub mutated: Option<Value>,
}

/// How the checks run the policy: `(settings, request) -> answer`, `Err` for a failure of
/// the policy itself (trap, panic, malformed answer).
pub type Evaluate<'a> = dyn FnMut(&Value, &Value) -> Result<Answer, String> + 'a;

/// What one case did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub injected: usize,
    pub rejected: usize,
    pub unchanged: usize,
}

/// Annotations and labels injection writes (its own bookkeeping and Istio's metadata).
const OWNED_METADATA: &[&str] = &[
    "sidecar.istio.io/status",
    "sidecar.istio.io/interceptionMode",
    "istio.io/rev",
    "proxy.istio.io/overrides",
    "kubectl.kubernetes.io/default-container",
    "kubectl.kubernetes.io/default-logs-container",
    "prometheus.io/scrape",
    "prometheus.io/port",
    "prometheus.io/path",
    "k8s.v1.cni.cncf.io/networks",
    "security.istio.io/tlsMode",
    "service.istio.io/canonical-name",
    "service.istio.io/canonical-revision",
    "topology.istio.io/network",
];

fn owned_key(k: &str) -> bool {
    OWNED_METADATA.contains(&k) || k.starts_with("traffic.sidecar.istio.io/")
}

/// Containers injection adds or owns (a user `istio-proxy` is merged with the template).
const OWNED_CONTAINERS: [&str; 4] = [
    "istio-proxy",
    "istio-init",
    "istio-validation",
    "enable-core-dump",
];

/// Container fields injection rewrites in app containers (probes and hooks go through the agent).
const OWNED_CONTAINER_FIELDS: [&str; 4] = [
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "lifecycle",
];

fn named<'a>(list: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    list?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// Every field of `before` that injection does not own is unchanged in `after`.
pub fn check_preserved(before: &Value, after: &Value) -> Result<(), String> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return Err("the mutated object is not a JSON object".into());
    };
    for (k, v) in b {
        if k == "metadata" || k == "spec" {
            continue;
        }
        if a.get(k) != Some(v) {
            return Err(format!("top-level field {k} changed"));
        }
    }
    let empty = json!({});
    let (bm, am) = (&before["metadata"], after.get("metadata").unwrap_or(&empty));
    for (k, v) in bm.as_object().into_iter().flatten() {
        if k == "labels" || k == "annotations" {
            for (key, value) in v.as_object().into_iter().flatten() {
                if !owned_key(key) && am[k].get(key) != Some(value) {
                    return Err(format!("metadata.{k}[{key}] changed or dropped"));
                }
            }
        } else if am.get(k) != Some(v) {
            return Err(format!("metadata.{k} changed"));
        }
    }
    let (bs, as_) = (&before["spec"], after.get("spec").unwrap_or(&empty));
    for (k, v) in bs.as_object().into_iter().flatten() {
        match k.as_str() {
            "containers" | "initContainers" => {
                for c in v.as_array().into_iter().flatten() {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    if OWNED_CONTAINERS.contains(&name) {
                        continue;
                    }
                    let found = named(as_.get("containers"), name)
                        .or_else(|| named(as_.get("initContainers"), name))
                        .ok_or_else(|| format!("container {name} dropped"))?;
                    for (field, value) in c.as_object().into_iter().flatten() {
                        if !OWNED_CONTAINER_FIELDS.contains(&field.as_str())
                            && found.get(field) != Some(value)
                        {
                            return Err(format!("container {name}: field {field} changed"));
                        }
                    }
                }
            }
            "volumes" => {
                for vol in v.as_array().into_iter().flatten() {
                    let name = vol.get("name").and_then(Value::as_str).unwrap_or("");
                    if named(as_.get("volumes"), name) != Some(vol) {
                        return Err(format!("volume {name} changed or dropped"));
                    }
                }
            }
            _ => {
                if as_.get(k) != Some(v) {
                    return Err(format!("spec.{k} changed"));
                }
            }
        }
    }
    Ok(())
}

/// An answer any request may get: a rejection has a message and a 4xx (or 500) code and no
/// mutation; no answer reports an internal failure.
pub fn well_formed(a: &Answer) -> Result<(), String> {
    if !a.accepted {
        if a.message.as_deref().unwrap_or("").is_empty() {
            return Err("a rejection without a message".into());
        }
        match a.code {
            Some(c) if (400..500).contains(&c) || c == 500 => {}
            other => return Err(format!("a rejection with code {other:?}")),
        }
        if a.mutated.is_some() {
            return Err("a rejection that also mutates".into());
        }
    }
    if let Some(m) = &a.message {
        if m.starts_with("internal server error") {
            return Err(format!("the policy failed: {m}"));
        }
    }
    Ok(())
}

/// Run one case through every injector of the canary setup and check the invariants.
pub fn check(case: &Case, lookup_skip: bool, eval: &mut Evaluate) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut injectors = Vec::new();
    let original = &case.request["object"];
    for (name, settings) in canary_settings(lookup_skip) {
        let a = eval(&settings, &case.request).map_err(|e| format!("{name}: {e}"))?;
        well_formed(&a).map_err(|e| format!("{name}: {e}"))?;
        let Some(mutated) = &a.mutated else {
            if a.accepted {
                tally.unchanged += 1;
            } else {
                tally.rejected += 1;
            }
            continue;
        };
        tally.injected += 1;
        injectors.push(name);
        check_preserved(original, mutated).map_err(|e| format!("{name}: {e}"))?;
        // Injecting the injected pod again changes nothing.
        let mut again = case.request.clone();
        again["object"] = mutated.clone();
        let b = eval(&settings, &again).map_err(|e| format!("{name}, re-injection: {e}"))?;
        well_formed(&b).map_err(|e| format!("{name}, re-injection: {e}"))?;
        if !b.accepted {
            return Err(format!(
                "{name}: the injected pod is rejected on re-injection: {}",
                b.message.unwrap_or_default()
            ));
        }
        if let Some(m) = b.mutated {
            return Err(format!(
                "{name}: re-injection is not idempotent: {}",
                first_difference(mutated, &m)
            ));
        }
    }
    if injectors.len() > 1 {
        return Err(format!("more than one revision injects: {injectors:?}"));
    }
    Ok(tally)
}

/// A JSON pointer to the first place `a` and `b` differ (for reports).
pub fn first_difference(a: &Value, b: &Value) -> String {
    fn walk(a: &Value, b: &Value, path: String) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                x.keys()
                    .chain(y.keys())
                    .find_map(|k| match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => walk(p, q, format!("{path}/{k}")),
                        _ => Some(format!("{path}/{k}")),
                    })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| walk(p, q, format!("{path}/{i}"))),
            _ => (a != b).then_some(if path.is_empty() { "/".into() } else { path }),
        }
    }
    walk(a, b, String::new()).unwrap_or_else(|| "(equal)".into())
}

/// The cluster of one case: its Namespace, whatever name is asked.
pub struct CaseCluster<'a>(pub &'a Case);

impl crate::admission::Cluster for CaseCluster<'_> {
    fn namespace(&self, _name: &str) -> Result<Value, String> {
        self.0.namespace_object()
    }
}

/// The native evaluator of `case` for [`check`].
pub fn native(case: &Case) -> impl FnMut(&Value, &Value) -> Result<Answer, String> + '_ {
    move |settings, request| {
        let s = crate::settings::Settings::from_value(settings)?;
        let o = crate::admission::evaluate(request, &s, &CaseCluster(case));
        Ok(Answer {
            accepted: o.accepted,
            message: o.message,
            code: o.code,
            mutated: o.mutated_object,
        })
    }
}
