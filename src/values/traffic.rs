//! Traffic capture's inputs: the helm values and mesh config it reads ([`TrafficConfig`]),
//! and the pod annotations that override them (the sidecar's `capture` renders the
//! `istio-iptables` arguments and CNI annotations from both).
//!
//! Each setting is the pod's annotation when present (even empty), else the helm value, as
//! the template's `annotation` helper does.

use serde_json::{Map, Value};

use super::annotations::{
    EXCLUDE_INBOUND_PORTS, INTERCEPTION_MODE, KUBEVIRT_INTERFACES, REROUTE_VIRTUAL_INTERFACES,
    STATUS_PORT,
};
use super::helm::{Helm, Key};
use crate::go::fmt::sprint;
use crate::versions::{Behaviour, Change};

/// The values / meshConfig inputs of traffic capture (Istio chart defaults in `Default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficConfig {
    /// `meshConfig.proxyListenPort` (0 = default 15001).
    pub proxy_listen_port: u32,
    /// `meshConfig.proxyInboundListenPort` (0 = default 15006).
    pub proxy_inbound_listen_port: u32,
    /// The effective ProxyConfig's `interceptionMode` (mesh default, `proxy.istio.io/config` applied).
    pub interception_mode: String,
    /// `values.global.proxy.includeIPRanges`.
    pub include_ip_ranges: String,
    /// `values.global.proxy.excludeIPRanges`.
    pub exclude_ip_ranges: String,
    /// `values.global.proxy.includeInboundPorts`.
    pub include_inbound_ports: String,
    /// `values.global.proxy.excludeInboundPorts`.
    pub exclude_inbound_ports: String,
    /// `values.global.proxy.includeOutboundPorts`.
    pub include_outbound_ports: String,
    /// `values.global.proxy.excludeOutboundPorts`.
    pub exclude_outbound_ports: String,
    /// `values.global.proxy.statusPort`, as text ("0" disables the status port).
    pub status_port: String,
    /// `values.global.logging.level`.
    pub log_level: String,
    /// `values.global.logAsJson`.
    pub log_as_json: bool,
    /// `values.pilot.cni.enabled`: istio-validation instead of istio-init (see [`Self::cni`]).
    pub cni_enabled: bool,
    /// `values.istio_cni.enabled`, which up to 1.23 also turns CNI mode on.
    pub istio_cni_enabled: bool,
    /// `values.global.proxy_init.forceApplyIptables`.
    pub force_apply_iptables: bool,
    /// `values.global.nativeNftables`.
    pub native_nftables: bool,
    /// The proxy's uid (1337; Istio derives another one only on OpenShift).
    pub proxy_uid: i64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            proxy_listen_port: 0,
            proxy_inbound_listen_port: 0,
            interception_mode: "REDIRECT".to_string(),
            include_ip_ranges: "*".to_string(),
            exclude_ip_ranges: String::new(),
            include_inbound_ports: "*".to_string(),
            exclude_inbound_ports: String::new(),
            include_outbound_ports: String::new(),
            exclude_outbound_ports: String::new(),
            status_port: "15020".to_string(),
            log_level: "default:info".to_string(),
            log_as_json: false,
            cni_enabled: false,
            istio_cni_enabled: false,
            force_apply_iptables: false,
            native_nftables: false,
            proxy_uid: 1337,
        }
    }
}

impl TrafficConfig {
    /// Read the inputs from effective helm `values` and `meshConfig` (whose `defaultConfig` is the
    /// pod's effective ProxyConfig). Keys that are absent keep the chart default.
    pub fn from_settings(helm: &Helm, mesh: &Value) -> TrafficConfig {
        let d = TrafficConfig::default();
        let proxy = |key: Key, default: String| helm.get(key).map(sprint).unwrap_or(default);
        let flag = |key: Key| helm.truthy(key);
        let port = |key: &str| lookup(mesh, &[key]).and_then(Value::as_u64).unwrap_or(0) as u32;
        TrafficConfig {
            proxy_listen_port: port("proxyListenPort"),
            proxy_inbound_listen_port: port("proxyInboundListenPort"),
            interception_mode: lookup(mesh, &["defaultConfig", "interceptionMode"])
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or(d.interception_mode),
            include_ip_ranges: proxy(Key::IncludeIpRanges, d.include_ip_ranges),
            exclude_ip_ranges: proxy(Key::ExcludeIpRanges, d.exclude_ip_ranges),
            include_inbound_ports: proxy(Key::IncludeInboundPorts, d.include_inbound_ports),
            exclude_inbound_ports: proxy(Key::ExcludeInboundPorts, d.exclude_inbound_ports),
            include_outbound_ports: proxy(Key::IncludeOutboundPorts, d.include_outbound_ports),
            exclude_outbound_ports: proxy(Key::ExcludeOutboundPorts, d.exclude_outbound_ports),
            status_port: proxy(Key::StatusPort, d.status_port),
            log_level: proxy(Key::LoggingLevel, d.log_level),
            log_as_json: flag(Key::LogAsJson),
            cni_enabled: flag(Key::CniEnabled),
            istio_cni_enabled: flag(Key::IstioCniEnabled),
            force_apply_iptables: flag(Key::ForceApplyIptables),
            native_nftables: flag(Key::NativeNftables),
            proxy_uid: d.proxy_uid,
        }
    }

    /// CNI mode: `pilot.cni.enabled`, and up to 1.23 also `istio_cni.enabled` (R03).
    pub fn cni(&self, behaviour: Behaviour) -> bool {
        self.cni_enabled || (!behaviour.has(Change::CniFromPilotOnly) && self.istio_cni_enabled)
    }
}

/// The template's `annotation` helper: the annotation when present, else the default.
pub fn annotation_or(annotations: &Map<String, Value>, name: &str, default: &str) -> String {
    match annotations.get(name) {
        Some(v) => sprint(v),
        None => default.to_string(),
    }
}

/// A non-empty annotation value (the template's `with index .ObjectMeta.Annotations ...`).
pub fn non_empty(annotations: &Map<String, Value>, name: &str) -> Option<String> {
    annotations.get(name).map(sprint).filter(|s| !s.is_empty())
}

/// The interception mode of the pod: the annotation, else the ProxyConfig's
/// (`-m`, `ISTIO_META_INTERCEPTION_MODE`, and the CNI `sidecar.istio.io/interceptionMode` annotation).
pub fn interception_mode(annotations: &Map<String, Value>, cfg: &TrafficConfig) -> String {
    non_empty(annotations, INTERCEPTION_MODE).unwrap_or_else(|| cfg.interception_mode.clone())
}

/// The status port as the template sees it (annotation, else `values.global.proxy.statusPort`).
pub fn status_port(annotations: &Map<String, Value>, cfg: &TrafficConfig) -> String {
    annotation_or(annotations, STATUS_PORT, &cfg.status_port)
}

/// Istio's `excludeInboundPort`: the excluded inbound ports plus the status port, unless that is
/// 0/empty or already listed.
pub fn exclude_inbound_ports(annotations: &Map<String, Value>, cfg: &TrafficConfig) -> String {
    let port = status_port(annotations, cfg);
    let excluded = annotation_or(
        annotations,
        EXCLUDE_INBOUND_PORTS,
        &cfg.exclude_inbound_ports,
    );
    let port = port.trim();
    if port.is_empty() || port == "0" {
        return excluded;
    }
    let mut out = Vec::new();
    for p in excluded.split(',') {
        if p == port {
            return excluded;
        }
        let p = p.trim();
        if !p.is_empty() {
            out.push(p);
        }
    }
    out.push(port);
    out.join(",")
}

/// A port list given by the annotation or a non-empty value (`-q`/`-o` and their CNI annotations).
pub fn optional_ports(annotations: &Map<String, Value>, name: &str, value: &str) -> Option<String> {
    match annotations.get(name) {
        Some(v) => Some(sprint(v)),
        None if !value.is_empty() => Some(value.to_string()),
        None => None,
    }
}

/// The `-k` arguments of `istio-init`: each present annotation's value (even empty), in order.
/// Up to 1.24 only `traffic.sidecar.istio.io/kubevirtInterfaces` is read (R13); 1.25 adds
/// `istio.io/reroute-virtual-interfaces` after it; from 1.26 the reroute annotation replaces
/// the kubevirt one (R17).
pub fn virtual_interfaces(annotations: &Map<String, Value>, behaviour: Behaviour) -> Vec<String> {
    let kubevirt = annotations.get(KUBEVIRT_INTERFACES).map(sprint);
    if !behaviour.has(Change::RerouteVirtualInterfaces) {
        return kubevirt.into_iter().collect();
    }
    let reroute = annotations.get(REROUTE_VIRTUAL_INTERFACES).map(sprint);
    if behaviour.has(Change::RerouteReplacesKubevirt) {
        return reroute.or(kubevirt).into_iter().collect();
    }
    kubevirt.into_iter().chain(reroute).collect()
}

fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.get(key))
        .filter(|v| !v.is_null())
}
