//! Traffic capture: the `istio-iptables` arguments of `istio-init` / `istio-validation`, and the
//! other outputs computed from the same inputs (interception mode, CNI annotations).
//!
//! Each setting is the pod's annotation when present (even empty), else the helm value, as
//! the template's `annotation` helper does.

use crate::json::Path;
use serde_json::{Map, Value};

use super::annotations::{
    AGENT_LOG_LEVEL, EXCLUDE_INBOUND_PORTS, EXCLUDE_INTERFACES, EXCLUDE_OUTBOUND_IP_RANGES,
    EXCLUDE_OUTBOUND_PORTS, INCLUDE_INBOUND_PORTS, INCLUDE_OUTBOUND_IP_RANGES,
    INCLUDE_OUTBOUND_PORTS, INTERCEPTION_MODE, KUBEVIRT_INTERFACES, REROUTE_VIRTUAL_INTERFACES,
    STATUS_PORT,
};
use super::helm::{Helm, Key};
use super::InjectError;

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
    /// `values.pilot.cni.enabled`: istio-validation instead of istio-init.
    pub cni_enabled: bool,
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
        let proxy = |key: Key, default: String| helm.get(key).map(go_sprint).unwrap_or(default);
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
            force_apply_iptables: flag(Key::ForceApplyIptables),
            native_nftables: flag(Key::NativeNftables),
            proxy_uid: d.proxy_uid,
        }
    }
}

/// The pod's annotations (empty when it has none).
fn pod_annotations(pod: &Value) -> Map<String, Value> {
    pod.at(&["metadata", "annotations"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The template's `annotation` helper: the annotation when present, else the default.
fn annotation_or(annotations: &Map<String, Value>, name: &str, default: &str) -> String {
    match annotations.get(name) {
        Some(v) => go_sprint(v),
        None => default.to_string(),
    }
}

/// A non-empty annotation value (the template's `with index .ObjectMeta.Annotations ...`).
fn non_empty(annotations: &Map<String, Value>, name: &str) -> Option<String> {
    annotations
        .get(name)
        .map(go_sprint)
        .filter(|s| !s.is_empty())
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
fn optional_ports(annotations: &Map<String, Value>, name: &str, value: &str) -> Option<String> {
    match annotations.get(name) {
        Some(v) => Some(go_sprint(v)),
        None if !value.is_empty() => Some(value.to_string()),
        None => None,
    }
}

/// The reroute-virtual-interfaces list: the new annotation wins over the deprecated kubevirt one.
fn virtual_interfaces(annotations: &Map<String, Value>) -> Option<String> {
    annotations
        .get(REROUTE_VIRTUAL_INTERFACES)
        .or_else(|| annotations.get(KUBEVIRT_INTERFACES))
        .map(go_sprint)
}

/// The `args` of `istio-init` (or, with CNI, `istio-validation`).
pub fn init_args(pod: &Value, cfg: &TrafficConfig) -> Result<Vec<String>, InjectError> {
    let annotations = pod_annotations(pod);
    if let Some((name, _)) = annotations.iter().find(|(_, v)| !v.is_string()) {
        return Err(InjectError(format!("annotation '{name}' must be a string")));
    }
    let mode = interception_mode(&annotations, cfg);
    let or_default = |port: u32, default: &str| {
        if port == 0 {
            default.to_string()
        } else {
            port.to_string()
        }
    };
    let uid = if mode == "TPROXY" {
        "1337".to_string()
    } else {
        cfg.proxy_uid.to_string()
    };
    let excluded = exclude_inbound_ports(&annotations, cfg);
    let mut args: Vec<String> = vec![
        "istio-iptables".into(),
        "-p".into(),
        or_default(cfg.proxy_listen_port, "15001"),
        "-z".into(),
        or_default(cfg.proxy_inbound_listen_port, "15006"),
        "-u".into(),
        uid,
        "-m".into(),
        mode,
        "-i".into(),
        annotation_or(
            &annotations,
            INCLUDE_OUTBOUND_IP_RANGES,
            &cfg.include_ip_ranges,
        ),
        "-x".into(),
        annotation_or(
            &annotations,
            EXCLUDE_OUTBOUND_IP_RANGES,
            &cfg.exclude_ip_ranges,
        ),
        "-b".into(),
        annotation_or(
            &annotations,
            INCLUDE_INBOUND_PORTS,
            &cfg.include_inbound_ports,
        ),
        "-d".into(),
        if excluded.is_empty() {
            "15090,15021".to_string()
        } else {
            format!("15090,15021,{excluded}")
        },
    ];
    let optional = [
        (
            "-q",
            optional_ports(
                &annotations,
                INCLUDE_OUTBOUND_PORTS,
                &cfg.include_outbound_ports,
            ),
        ),
        (
            "-o",
            optional_ports(
                &annotations,
                EXCLUDE_OUTBOUND_PORTS,
                &cfg.exclude_outbound_ports,
            ),
        ),
        ("-k", virtual_interfaces(&annotations)),
        ("-c", annotations.get(EXCLUDE_INTERFACES).map(go_sprint)),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            args.push(flag.to_string());
            args.push(v);
        }
    }
    args.push(
        [
            "--log_output_level=",
            &annotation_or(&annotations, AGENT_LOG_LEVEL, &cfg.log_level),
        ]
        .concat(),
    );
    if cfg.log_as_json {
        args.push("--log_as_json".into());
    }
    if cfg.cni_enabled {
        args.push("--run-validation".into());
        args.push("--skip-rule-apply".into());
    } else if cfg.force_apply_iptables {
        args.push("--force-apply".into());
    }
    if cfg.native_nftables {
        args.push("--native-nftables".into());
    }
    Ok(args)
}

/// With CNI, the template records the capture settings as pod annotations for the CNI plugin
/// (in this order; empty optional ones are left out).
pub fn cni_annotations(
    annotations: &Map<String, Value>,
    cfg: &TrafficConfig,
) -> Vec<(String, String)> {
    let mut out = vec![(
        INTERCEPTION_MODE.to_string(),
        interception_mode(annotations, cfg),
    )];
    let mut push_non_empty = |name: &str, value: String| {
        if !value.is_empty() {
            out.push((name.to_string(), value));
        }
    };
    push_non_empty(
        INCLUDE_OUTBOUND_IP_RANGES,
        annotation_or(
            annotations,
            INCLUDE_OUTBOUND_IP_RANGES,
            &cfg.include_ip_ranges,
        ),
    );
    push_non_empty(
        EXCLUDE_OUTBOUND_IP_RANGES,
        annotation_or(
            annotations,
            EXCLUDE_OUTBOUND_IP_RANGES,
            &cfg.exclude_ip_ranges,
        ),
    );
    out.push((
        INCLUDE_INBOUND_PORTS.to_string(),
        annotation_or(
            annotations,
            INCLUDE_INBOUND_PORTS,
            &cfg.include_inbound_ports,
        ),
    ));
    out.push((
        EXCLUDE_INBOUND_PORTS.to_string(),
        exclude_inbound_ports(annotations, cfg),
    ));
    if let Some(v) = optional_ports(
        annotations,
        INCLUDE_OUTBOUND_PORTS,
        &cfg.include_outbound_ports,
    ) {
        out.push((INCLUDE_OUTBOUND_PORTS.to_string(), v));
    }
    if let Some(v) = optional_ports(
        annotations,
        EXCLUDE_OUTBOUND_PORTS,
        &cfg.exclude_outbound_ports,
    ) {
        out.push((EXCLUDE_OUTBOUND_PORTS.to_string(), v));
    }
    for name in [
        KUBEVIRT_INTERFACES,
        REROUTE_VIRTUAL_INTERFACES,
        EXCLUDE_INTERFACES,
    ] {
        if let Some(v) = non_empty(annotations, name) {
            out.push((name.to_string(), v));
        }
    }
    out
}

fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.get(key))
        .filter(|v| !v.is_null())
}

/// `fmt.Sprint` of a scalar helm value (integers without a fraction, strings as is).
pub fn go_sprint(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => crate::json::int_text(i),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                crate::json::int_text(f as i64)
            }
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_sprint_prints_numbers_as_go_does() {
        for (v, want) in [
            (json!(15020), "15020"),
            (json!(-4), "-4"),
            (json!(4.0), "4"),
            (json!(0.5), "0.5"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(1e20), "1e+20"),
            (json!("x"), "x"),
            (json!(true), "true"),
        ] {
            assert_eq!(go_sprint(&v), want, "{v}");
        }
    }

    fn helm(values: &Value) -> Helm {
        Helm::new(values, "istio-system", "")
    }

    fn pod(annotations: Value) -> Value {
        json!({"metadata": {"annotations": annotations}, "spec": {}})
    }

    fn args(pod: &Value, cfg: &TrafficConfig) -> String {
        init_args(pod, cfg).unwrap().join(" ")
    }

    const DEFAULT: &str =
        "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i * -x  -b * -d 15090,15021,15020";

    #[test]
    fn default_args_match_hello_golden() {
        let cfg = TrafficConfig::default();
        let got = init_args(&json!({"metadata": {}}), &cfg).unwrap();
        assert_eq!(got[12], "");
        assert_eq!(
            args(&json!({}), &cfg),
            format!("{DEFAULT} --log_output_level=default:info")
        );
    }

    #[test]
    fn traffic_params_values() {
        let values = json!({"global": {"proxy": {
            "includeIPRanges": "127.0.0.1/24,10.96.0.1/24",
            "excludeIPRanges": "10.96.0.2/24,10.96.0.3/24",
            "excludeInboundPorts": "4,5,6",
            "statusPort": 0
        }}});
        let cfg = TrafficConfig::from_settings(&helm(&values), &json!({}));
        assert_eq!(
            args(&json!({}), &cfg),
            "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i 127.0.0.1/24,10.96.0.1/24 \
             -x 10.96.0.2/24,10.96.0.3/24 -b * -d 15090,15021,4,5,6 --log_output_level=default:info"
        );
    }

    #[test]
    fn wildcard_annotations_append_status_port() {
        let p = pod(json!({
            INCLUDE_INBOUND_PORTS: "*",
            EXCLUDE_INBOUND_PORTS: "4,5,6",
            INCLUDE_OUTBOUND_IP_RANGES: "*",
            EXCLUDE_OUTBOUND_IP_RANGES: "10.96.0.2/24,10.96.0.3/24",
        }));
        assert_eq!(
            args(&p, &TrafficConfig::default()),
            "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i * -x 10.96.0.2/24,10.96.0.3/24 \
             -b * -d 15090,15021,4,5,6,15020 --log_output_level=default:info"
        );
        // Already excluded: kept as written.
        let p = pod(json!({EXCLUDE_INBOUND_PORTS: "15020,7"}));
        assert!(args(&p, &TrafficConfig::default()).contains("-d 15090,15021,15020,7 "));
        // Status port 0 and nothing excluded.
        let p = pod(json!({STATUS_PORT: "0"}));
        assert!(args(&p, &TrafficConfig::default()).contains("-d 15090,15021 --log"));
    }

    #[test]
    fn interfaces_and_status_port_annotations() {
        let values = json!({"global": {"proxy": {"statusPort": 123}}});
        let cfg = TrafficConfig::from_settings(&helm(&values), &json!({}));
        let p = pod(json!({KUBEVIRT_INTERFACES: "net1"}));
        assert_eq!(
            args(&p, &cfg),
            "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i * -x  -b * -d 15090,15021,123 \
             -k net1 --log_output_level=default:info"
        );
        let p = pod(
            json!({REROUTE_VIRTUAL_INTERFACES: "net1ps5,net2qr9", KUBEVIRT_INTERFACES: "old", EXCLUDE_INTERFACES: "eth9"}),
        );
        assert!(args(&p, &TrafficConfig::default()).ends_with(
            "-d 15090,15021,15020 -k net1ps5,net2qr9 -c eth9 --log_output_level=default:info"
        ));
        let p = pod(json!({STATUS_PORT: "123"}));
        assert!(args(&p, &TrafficConfig::default()).contains("-d 15090,15021,123 "));
    }

    #[test]
    fn outbound_ports_from_annotations_or_values() {
        let p = pod(json!({INCLUDE_OUTBOUND_PORTS: "80", EXCLUDE_OUTBOUND_PORTS: "8080,9090"}));
        assert!(args(&p, &TrafficConfig::default())
            .contains("-d 15090,15021,15020 -q 80 -o 8080,9090 --log"));
        let values = json!({"global": {"proxy": {"excludeOutboundPorts": "25"}}});
        let cfg = TrafficConfig::from_settings(&helm(&values), &json!({}));
        assert!(args(&json!({}), &cfg).contains("-d 15090,15021,15020 -o 25 --log"));
        // An empty annotation still wins over the value and still emits the flag.
        let p = pod(json!({EXCLUDE_OUTBOUND_PORTS: ""}));
        let got = init_args(&p, &cfg).unwrap();
        assert_eq!(&got[got.len() - 3..got.len() - 1], ["-o", ""]);
    }

    #[test]
    fn tproxy_cni_and_logging() {
        let mesh =
            json!({"defaultConfig": {"interceptionMode": "TPROXY"}, "proxyListenPort": 15101});
        let values = json!({"pilot": {"cni": {"enabled": true}}, "global": {"logAsJson": true, "logging": {"level": "default:debug"}}});
        let mut cfg = TrafficConfig::from_settings(&helm(&values), &mesh);
        cfg.proxy_uid = 1000;
        assert_eq!(
            args(&json!({}), &cfg),
            "istio-iptables -p 15101 -z 15006 -u 1337 -m TPROXY -i * -x  -b * -d 15090,15021,15020 \
             --log_output_level=default:debug --log_as_json --run-validation --skip-rule-apply"
        );
        let p = pod(json!({INTERCEPTION_MODE: "REDIRECT", AGENT_LOG_LEVEL: "all:warn"}));
        assert!(args(&p, &cfg).starts_with("istio-iptables -p 15101 -z 15006 -u 1000 -m REDIRECT"));
        assert!(args(&p, &cfg).contains("--log_output_level=all:warn"));
        let values =
            json!({"global": {"proxy_init": {"forceApplyIptables": true}, "nativeNftables": true}});
        let cfg = TrafficConfig::from_settings(&helm(&values), &json!({}));
        assert!(args(&json!({}), &cfg).ends_with("default:info --force-apply --native-nftables"));
    }

    #[test]
    fn cni_annotations_match_hello_cni_golden() {
        let cfg = TrafficConfig::from_settings(
            &helm(&json!({"pilot": {"cni": {"enabled": true}}})),
            &json!({}),
        );
        let got = cni_annotations(&Map::new(), &cfg);
        let want: Vec<(String, String)> = [
            (INTERCEPTION_MODE, "REDIRECT"),
            (INCLUDE_OUTBOUND_IP_RANGES, "*"),
            (INCLUDE_INBOUND_PORTS, "*"),
            (EXCLUDE_INBOUND_PORTS, "15020"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        let a = pod(
            json!({INTERCEPTION_MODE: "NONE", EXCLUDE_OUTBOUND_PORTS: "1", REROUTE_VIRTUAL_INTERFACES: "n1"}),
        );
        let got = cni_annotations(a["metadata"]["annotations"].as_object().unwrap(), &cfg);
        assert!(got.contains(&(INTERCEPTION_MODE.to_string(), "NONE".to_string())));
        assert!(got.contains(&(EXCLUDE_OUTBOUND_PORTS.to_string(), "1".to_string())));
        assert!(got.contains(&(REROUTE_VIRTUAL_INTERFACES.to_string(), "n1".to_string())));
    }

    #[test]
    fn interception_mode_prefers_annotation() {
        let cfg = TrafficConfig::default();
        let a = pod(json!({INTERCEPTION_MODE: "NONE"}));
        assert_eq!(
            interception_mode(a["metadata"]["annotations"].as_object().unwrap(), &cfg),
            "NONE"
        );
        assert_eq!(interception_mode(&Map::new(), &cfg), "REDIRECT");
    }
}
