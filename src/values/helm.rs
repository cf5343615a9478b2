//! The helm values the sidecar template reads, resolved once per settings: for each value the
//! template uses, the chart default with `settings.values` applied Helm style, without building
//! (or parsing) the merged values tree. A lookup is then an array index, not a walk through
//! `BTreeMap`s, and a fresh policy instance (policy-server's model) skips most of the merge.

use serde_json::Value;

use crate::go::fmt::{sprint, truthy};
use crate::json::value;
use crate::settings::Settings;
use serde_json::Map;

/// Image registry used when the settings name none (the upstream release registry).
pub const DEFAULT_HUB: &str = "docker.io/istio";
/// Proxy image tag used when the settings name none. The conformance settings pin
/// `registry.istio.io/testing` / `latest` instead, as Istio's own tests do.
pub const DEFAULT_TAG: &str = "1.28.0";

/// A chart default (the `istio-discovery` chart's `values.yaml`).
enum ChartDefault {
    Str(&'static str),
    Bool(bool),
    Int(i64),
    /// An empty list.
    List,
    /// Not in the chart: absent unless the settings set it.
    Absent,
    /// `global.istioNamespace`: the settings' `istioNamespace`.
    Namespace,
    /// `revision`: the settings' revision, empty for `default`.
    Revision,
    /// `global.tag`: the release of the settings' `istioVersion` (else [`DEFAULT_TAG`]).
    ReleaseTag,
    /// `global.proxy.resources`: a map, merged with the settings' map.
    Resources,
}

macro_rules! keys {
    ($($(#[$doc:meta])* $key:ident = [$($seg:literal),+] $default:expr;)+) => {
        /// A helm value the template reads.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Key { $($(#[$doc])* $key),+ }
        /// Each key's path and default, in the order of [`Key`].
        const TABLE: &[(&[&str], ChartDefault)] = &[$((&[$($seg),+], $default)),+];
    };
}

use ChartDefault::*;
keys! {
    Revision = ["revision"] Revision;
    RewriteAppHttpProbe = ["sidecarInjectorWebhook", "rewriteAppHTTPProbe"] Bool(true);
    CniEnabled = ["pilot", "cni", "enabled"] Bool(false);
    CniProvider = ["pilot", "cni", "provider"] Str("default");
    ClusterTrustBundleApi = ["pilot", "env", "ENABLE_CLUSTER_TRUST_BUNDLE_API"] Absent;
    CrlConfigMapName = ["pilot", "crlConfigMapName"] Absent;
    /// Up to 1.23 the operator's CNI values (the chart has no `istio_cni.enabled`).
    IstioCniEnabled = ["istio_cni", "enabled"] Absent;
    IstioCniChained = ["istio_cni", "chained"] Bool(true);
    IstioCniProvider = ["istio_cni", "provider"] Str("default");
    Hub = ["global", "hub"] Str(DEFAULT_HUB);
    Tag = ["global", "tag"] ReleaseTag;
    Variant = ["global", "variant"] Str("");
    TrustBundleName = ["global", "trustBundleName"] Absent;
    ImagePullPolicy = ["global", "imagePullPolicy"] Str("");
    ImagePullSecrets = ["global", "imagePullSecrets"] List;
    IstioNamespace = ["global", "istioNamespace"] Namespace;
    PilotCertProvider = ["global", "pilotCertProvider"] Str("istiod");
    CaAddress = ["global", "caAddress"] Str("");
    CaName = ["global", "caName"] Str("");
    Network = ["global", "network"] Str("");
    MeshId = ["global", "meshID"] Str("");
    TrustDomain = ["global", "trustDomain"] Str("");
    LogAsJson = ["global", "logAsJson"] Bool(false);
    LoggingLevel = ["global", "logging", "level"] Str("default:info");
    ClusterName = ["global", "multiCluster", "clusterName"] Str("");
    SdsAudience = ["global", "sds", "token", "aud"] Str("istio-ca");
    StsPort = ["global", "sts", "servicePort"] Int(0);
    MountMtlsCerts = ["global", "mountMtlsCerts"] Bool(false);
    NativeNftables = ["global", "nativeNftables"] Absent;
    InitImage = ["global", "proxy_init", "image"] Str("proxyv2");
    ForceApplyIptables = ["global", "proxy_init", "forceApplyIptables"] Absent;
    ProxyImage = ["global", "proxy", "image"] Str("proxyv2");
    ClusterDomain = ["global", "proxy", "clusterDomain"] Str("cluster.local");
    ComponentLogLevel = ["global", "proxy", "componentLogLevel"] Str("misc:error");
    EnableCoreDump = ["global", "proxy", "enableCoreDump"] Bool(false);
    OutlierLogPath = ["global", "proxy", "outlierLogPath"] Str("");
    SeccompProfile = ["global", "proxy", "seccompProfile"] Absent;
    ExcludeInboundPorts = ["global", "proxy", "excludeInboundPorts"] Str("");
    ExcludeIpRanges = ["global", "proxy", "excludeIPRanges"] Str("");
    ExcludeOutboundPorts = ["global", "proxy", "excludeOutboundPorts"] Str("");
    IncludeIpRanges = ["global", "proxy", "includeIPRanges"] Str("*");
    IncludeInboundPorts = ["global", "proxy", "includeInboundPorts"] Str("*");
    IncludeOutboundPorts = ["global", "proxy", "includeOutboundPorts"] Str("");
    HoldApplication = ["global", "proxy", "holdApplicationUntilProxyStarts"] Bool(false);
    LogLevel = ["global", "proxy", "logLevel"] Str("warning");
    Privileged = ["global", "proxy", "privileged"] Bool(false);
    ReadinessFailureThreshold = ["global", "proxy", "readinessFailureThreshold"] Int(4);
    ReadinessInitialDelay = ["global", "proxy", "readinessInitialDelaySeconds"] Int(0);
    ReadinessPeriod = ["global", "proxy", "readinessPeriodSeconds"] Int(15);
    StartupProbeEnabled = ["global", "proxy", "startupProbe", "enabled"] Bool(true);
    StartupProbeFailureThreshold = ["global", "proxy", "startupProbe", "failureThreshold"] Int(600);
    StatusPort = ["global", "proxy", "statusPort"] Int(15020);
    Resources = ["global", "proxy", "resources"] Resources;
    Lifecycle = ["global", "proxy", "lifecycle"] Absent;
    CapNetBindService = ["global", "proxy", "capNetBindService"] Absent;
}

/// What `settings.values` does to the chart's value at a path.
pub enum Layer<'a> {
    /// Not mentioned: the chart default stands.
    Unset,
    /// Set to `null`, or a map on the way replaced by a non-map: no value.
    Deleted,
    Found(&'a Value),
}

/// The effect of `overlay` at `path`. Every map on a path the template reads is a map in the
/// chart, so Helm's merge keeps walking both as long as the overlay has maps.
pub fn layer<'a>(overlay: &'a Value, path: &[&str]) -> Layer<'a> {
    let mut cur = overlay;
    for key in path {
        let Value::Object(map) = cur else {
            return Layer::Deleted;
        };
        cur = match map.get(*key) {
            None => return Layer::Unset,
            Some(Value::Null) => return Layer::Deleted,
            Some(v) => v,
        };
    }
    Layer::Found(cur)
}

/// Helm-style deep merge of `overlay` onto `base`.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) =
                    b.get_mut(k).filter(|e| e.is_object() && v.is_object())
                {
                    merge(existing, v);
                } else {
                    b.insert(k.clone(), strip_nulls(v));
                }
            }
        }
        (b, o) => *b = strip_nulls(o),
    }
}

/// A copy of `v` without `null` map entries (a null in an overlay deletes, never stores).
pub fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                out.insert(k.clone(), strip_nulls(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The chart's proxy resources.
fn default_resources() -> Value {
    value!({
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "2000m", "memory": "1024Mi"}
    })
}

/// What the chart's defaults take from the settings: how the revision was installed.
#[derive(Debug, Clone, Copy)]
pub struct Install<'a> {
    pub istio_namespace: &'a str,
    /// The helm `revision` value: empty for the default revision.
    pub revision: &'a str,
    /// The release installed: the default proxy image tag.
    pub tag: &'a str,
}

impl Default for Install<'_> {
    fn default() -> Self {
        Install {
            istio_namespace: "istio-system",
            revision: "",
            tag: DEFAULT_TAG,
        }
    }
}

/// The effective value of every [`Key`].
#[derive(Debug, PartialEq)]
pub struct Helm {
    values: Vec<Option<Value>>,
}

impl Helm {
    /// The chart defaults for `install`, then `overlay`.
    pub fn new(overlay: &Value, install: &Install) -> Helm {
        let mut values = Vec::with_capacity(TABLE.len());
        for (path, default) in TABLE {
            let value = match (layer(overlay, path), default) {
                (Layer::Deleted, _) => None,
                (Layer::Found(v), Resources) if v.is_object() => {
                    let mut merged = default_resources();
                    merge(&mut merged, v);
                    Some(merged)
                }
                (Layer::Found(v), _) => Some(strip_nulls(v)),
                (Layer::Unset, Str(s)) => Some(Value::from(*s)),
                (Layer::Unset, Bool(b)) => Some(Value::Bool(*b)),
                (Layer::Unset, Int(i)) => Some(Value::from(*i)),
                (Layer::Unset, List) => Some(Value::Array(Vec::new())),
                (Layer::Unset, Absent) => None,
                (Layer::Unset, Namespace) => Some(Value::from(install.istio_namespace)),
                (Layer::Unset, Revision) => Some(Value::from(install.revision)),
                (Layer::Unset, ReleaseTag) => Some(Value::from(install.tag)),
                (Layer::Unset, Resources) => Some(default_resources()),
            };
            values.push(value);
        }
        Helm { values }
    }

    /// The effective helm values of `settings`.
    pub fn of(settings: &Settings) -> Helm {
        let revision = match settings.revision.as_str() {
            "default" => "",
            r => r,
        };
        let tag = settings.istio_version.release_tag();
        let install = Install {
            istio_namespace: &settings.istio_namespace,
            revision,
            tag: tag.as_deref().unwrap_or(DEFAULT_TAG),
        };
        Helm::new(&settings.values, &install)
    }

    pub fn get(&self, key: Key) -> Option<&Value> {
        self.values.get(key as usize).and_then(Option::as_ref)
    }

    pub fn str(&self, key: Key) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// `fmt.Sprint` of the value ("" when absent).
    pub fn text(&self, key: Key) -> String {
        self.get(key).map(sprint).unwrap_or_default()
    }

    /// Go-template truthiness (absent, false, 0, "" and empty are false).
    pub fn truthy(&self, key: Key) -> bool {
        self.get(key).is_some_and(truthy)
    }
}

#[cfg(test)]
mod tests;
