//! Validation of the per-pod annotations Istio checks before rendering (`pkg/kube/inject/validate.go`).
//!
//! A pod carrying an invalid value is rejected, like istiod does, with a message that names the
//! annotation and repeats Istio's wording (`invalid value '<v>' for annotation '<name>': ...`), so
//! users and tests matching on Istio's text see the same thing.

use crate::versions::{Behaviour, Change};
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::InjectError;
use crate::go::fmt::{parse_bool, parse_uint, quote};
use crate::go::quantity::parse_quantity;

pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
pub const STATUS_PORT: &str = "status.sidecar.istio.io/port";
pub const READINESS_INITIAL_DELAY: &str = "readiness.status.sidecar.istio.io/initialDelaySeconds";
pub const READINESS_PERIOD: &str = "readiness.status.sidecar.istio.io/periodSeconds";
pub const READINESS_FAILURE_THRESHOLD: &str = "readiness.status.sidecar.istio.io/failureThreshold";
pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";
pub const KUBEVIRT_INTERFACES: &str = "traffic.sidecar.istio.io/kubevirtInterfaces";
pub const REROUTE_VIRTUAL_INTERFACES: &str = "istio.io/reroute-virtual-interfaces";
pub const PROMETHEUS_MERGE_METRICS: &str = "prometheus.istio.io/merge-metrics";
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
pub const REWRITE_APP_HTTP_PROBERS: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
pub const AGENT_LOG_LEVEL: &str = "sidecar.istio.io/agentLogLevel";

pub const ENABLE_CORE_DUMP: &str = "sidecar.istio.io/enableCoreDump";

type Check = fn(&str) -> Result<(), String>;

/// Which versions validate an annotation.
#[derive(Clone, Copy)]
enum Gate {
    Always,
    /// From the version that introduced the change.
    Since(Change),
    /// Up to the version before it.
    Until(Change),
}

/// The annotations Istio validates, with their checks and the versions that do (validate.go's
/// `AnnotationValidation` per version).
const CHECKS: &[(&str, Check, Gate)] = &[
    (INTERCEPTION_MODE, check_interception_mode, Gate::Always),
    // R09: a Go bool up to 1.24.
    (
        ENABLE_CORE_DUMP,
        check_bool,
        Gate::Until(Change::CoreDumpAnnotationUnchecked),
    ),
    (STATUS_PORT, check_status_port, Gate::Always),
    (READINESS_INITIAL_DELAY, check_uint32, Gate::Always),
    (READINESS_PERIOD, check_uint32, Gate::Always),
    (READINESS_FAILURE_THRESHOLD, check_uint32, Gate::Always),
    (
        INCLUDE_OUTBOUND_IP_RANGES,
        check_include_ip_ranges,
        Gate::Always,
    ),
    (
        EXCLUDE_OUTBOUND_IP_RANGES,
        check_exclude_ip_ranges,
        Gate::Always,
    ),
    (
        INCLUDE_INBOUND_PORTS,
        check_include_inbound_ports,
        Gate::Always,
    ),
    (
        EXCLUDE_INBOUND_PORTS,
        check_exclude_inbound_ports,
        Gate::Always,
    ),
    (
        EXCLUDE_OUTBOUND_PORTS,
        check_exclude_outbound_ports,
        Gate::Always,
    ),
    (PROMETHEUS_MERGE_METRICS, check_bool, Gate::Always),
    (PROXY_CONFIG, check_proxy_config, Gate::Always),
    // R21: from 1.27. Before, a value that is no quantity fails later, when the rendered
    // resources are decoded (see `sidecar::resources`), which rejects the pod as well.
    (
        PROXY_CPU,
        check_quantity,
        Gate::Since(Change::ProxyResourceAnnotationsChecked),
    ),
    (
        PROXY_MEMORY,
        check_quantity,
        Gate::Since(Change::ProxyResourceAnnotationsChecked),
    ),
    (
        PROXY_CPU_LIMIT,
        check_quantity,
        Gate::Since(Change::ProxyResourceAnnotationsChecked),
    ),
    (
        PROXY_MEMORY_LIMIT,
        check_quantity,
        Gate::Since(Change::ProxyResourceAnnotationsChecked),
    ),
    // R29: from 1.30.
    (
        EXCLUDE_INTERFACES,
        check_interface_names,
        Gate::Since(Change::InterfaceNamesChecked),
    ),
    (
        KUBEVIRT_INTERFACES,
        check_interface_names,
        Gate::Since(Change::InterfaceNamesChecked),
    ),
    (
        REROUTE_VIRTUAL_INTERFACES,
        check_interface_names,
        Gate::Since(Change::InterfaceNamesChecked),
    ),
];

/// Check every known annotation of the pod. All problems are reported at once, in Istio's
/// multi-error layout, sorted by annotation name so the message is stable.
pub fn validate(annotations: &Map<String, Value>, behaviour: Behaviour) -> Result<(), InjectError> {
    let mut errors = Vec::new();
    for (name, check, gate) in CHECKS {
        let checked = match gate {
            Gate::Always => true,
            Gate::Since(c) => behaviour.has(*c),
            Gate::Until(c) => !behaviour.has(*c),
        };
        let Some(raw) = annotations.get(*name).filter(|_| checked) else {
            continue;
        };
        let value = match raw {
            Value::String(s) => s.clone(),
            other => {
                errors.push(format!(
                    "invalid value '{other}' for annotation '{name}': annotation values must be strings"
                ));
                continue;
            }
        };
        if let Err(e) = check(&value) {
            errors.push(format!(
                "invalid value '{value}' for annotation '{name}': {e}"
            ));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_unstable();
    let noun = if errors.len() == 1 { "error" } else { "errors" };
    let mut msg = format!("{} {noun} occurred:", errors.len());
    for e in &errors {
        msg.push_str("\n\t* ");
        msg.push_str(e);
    }
    msg.push_str("\n\n");
    Err(InjectError(msg))
}

fn check_interception_mode(mode: &str) -> Result<(), String> {
    match mode {
        "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
        _ => Err(format!(
            "interceptionMode invalid, use REDIRECT,TPROXY,NONE: {mode}"
        )),
    }
}

// Istio's own wording names excludeInboundPorts for the status port; kept for matching messages.
fn check_status_port(port: &str) -> Result<(), String> {
    parse_port(port)
        .map(|_| ())
        .map_err(|e| format!("excludeInboundPorts invalid: {e}"))
}

fn check_uint32(value: &str) -> Result<(), String> {
    parse_uint(value, u32::MAX as u64, "ParseUint").map(|_| ())
}

fn check_bool(value: &str) -> Result<(), String> {
    parse_bool(value).map(|_| ()).ok_or_else(|| {
        format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            quote(value)
        )
    })
}

fn check_include_ip_ranges(ranges: &str) -> Result<(), String> {
    if ranges == "*" {
        return Ok(());
    }
    check_cidr_list(ranges).map_err(|e| format!("includeIPRanges invalid: {e}"))
}

fn check_exclude_ip_ranges(ranges: &str) -> Result<(), String> {
    check_cidr_list(ranges).map_err(|e| format!("excludeIPRanges invalid: {e}"))
}

fn check_include_inbound_ports(ports: &str) -> Result<(), String> {
    if ports == "*" {
        return Ok(());
    }
    check_port_list("includeInboundPorts", ports)
}

fn check_exclude_inbound_ports(ports: &str) -> Result<(), String> {
    check_port_list("excludeInboundPorts", ports)
}

fn check_exclude_outbound_ports(ports: &str) -> Result<(), String> {
    check_port_list("excludeOutboundPorts", ports)
}

/// validate.go's `validateResourceQuantity` (1.27+): no control characters, then a quantity.
fn check_quantity(value: &str) -> Result<(), String> {
    if value.chars().any(char::is_control) {
        return Err("value contains control characters".to_string());
    }
    parse_quantity(value).map(|_| ())
}

/// `netutil.ValidateInterfaceNames` (1.30+), as Istio's tests pin it down: `""` is fine;
/// otherwise a comma list whose space-trimmed entries are non-empty Linux interface names of
/// at most 15 characters from `[A-Za-z0-9_.-]`.
fn check_interface_names(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    for entry in value.split(',') {
        let name = entry.trim();
        if name.is_empty() {
            return Err(format!("empty interface name in list {}", quote(value)));
        }
        if name.len() > 15 {
            return Err(format!(
                "interface name {} is longer than 15 characters",
                quote(name)
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(format!(
                "interface name {} contains the invalid character {}",
                quote(name),
                quote(&c.to_string())
            ));
        }
    }
    Ok(())
}

/// `proxy.istio.io/config` is ProxyConfig YAML (JSON included). It must be a map, and the
/// fields whose values Istio's ProxyConfig validation rejects are checked.
fn check_proxy_config(value: &str) -> Result<(), String> {
    let convert = |e: String| format!("failed to convert to apply proxy config: {e}");
    let parsed: Value = if value.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        crate::go::yaml::parse(value).map_err(convert)?
    };
    let obj = match parsed {
        Value::Object(obj) => obj,
        Value::Null => return Ok(()),
        other => return Err(convert(format!("expected a map, got {other}"))),
    };
    for key in ["statusPort", "proxyAdminPort"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            match v.as_u64() {
                Some(p) if (1..=65535).contains(&p) => {}
                _ => {
                    return Err(format!(
                        "invalid {key}: port number {v} must be in the range 1..65535"
                    ))
                }
            }
        }
    }
    if let Some(v) = obj.get("concurrency").filter(|v| !v.is_null()) {
        if v.as_u64().is_none() {
            return Err(format!(
                "concurrency must be greater than or equal to 0: {v}"
            ));
        }
    }
    if let Some(v) = obj.get("interceptionMode").filter(|v| !v.is_null()) {
        match v.as_str() {
            Some("REDIRECT" | "TPROXY" | "NONE") => {}
            _ => {
                return Err(convert(format!(
                    "invalid value for enum interceptionMode: {v}"
                )))
            }
        }
    }
    if let Some(v) = obj
        .get("holdApplicationUntilProxyStarts")
        .filter(|v| !v.is_null())
    {
        if !v.is_boolean() {
            return Err(convert(format!(
                "holdApplicationUntilProxyStarts: invalid value {v} for type bool"
            )));
        }
    }
    if let Some(v) = obj.get("discoveryAddress").filter(|v| !v.is_null()) {
        check_proxy_address(v).map_err(|e| format!("invalid discovery address: {e}"))?;
    }
    Ok(())
}

/// Istio's `ValidateProxyAddress`: `host:port` with a valid port.
fn check_proxy_address(v: &Value) -> Result<(), String> {
    let addr = v.as_str().ok_or_else(|| format!("{v} is not a string"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("unable to split {addr:?}: missing port in address"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{addr:?}: host is empty"));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!("port number {port} must be in the range 1..65535")),
    }
}

fn check_port_list(parameter: &str, ports: &str) -> Result<(), String> {
    parse_ports(ports)
        .map(|_| ())
        .map_err(|e| format!("{parameter} invalid: {e}"))
}

fn check_cidr_list(cidrs: &str) -> Result<(), String> {
    if cidrs.is_empty() {
        return Ok(());
    }
    for cidr in cidrs.split(',') {
        parse_prefix(cidr).map_err(|e| format!("failed parsing cidr '{cidr}': {e}"))?;
    }
    Ok(())
}

/// Go's `netip.ParsePrefix`: `<addr>/<bits>`, no zone, bits in range, digits only.
fn parse_prefix(s: &str) -> Result<(), String> {
    let fail = |why: String| format!("netip.ParsePrefix({}): {why}", quote(s));
    let Some((addr, bits)) = s.rsplit_once('/') else {
        return Err(fail("no '/'".to_string()));
    };
    if addr.contains('%') {
        return Err(fail("IPv6 zones cannot be present in a prefix".to_string()));
    }
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| fail(format!("ParseAddr({}): unable to parse IP", quote(addr))))?;
    let bad_bits = || fail(format!("bad bits after slash: {}", quote(bits)));
    if bits.is_empty()
        || !bits.bytes().all(|b| b.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return Err(bad_bits());
    }
    let n: u32 = bits.parse().map_err(|_| bad_bits())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if n > max {
        return Err(fail("prefix length out of range".to_string()));
    }
    Ok(())
}

/// Istio's `parsePorts`: a comma-separated list (empty allowed) of ports, each possibly padded.
pub fn parse_ports(ports: &str) -> Result<Vec<u16>, String> {
    let ports = ports.trim();
    if ports.is_empty() {
        return Ok(Vec::new());
    }
    let mut parsed = Vec::new();
    for p in ports.split(',') {
        parsed.push(parse_port(p).map_err(|e| format!("failed parsing port '{p}': {e}"))?);
    }
    Ok(parsed)
}

/// Istio's `parsePort`: a decimal port 0..=65535, surrounding whitespace ignored.
pub fn parse_port(port: &str) -> Result<u16, String> {
    parse_uint(port.trim(), u16::MAX as u64, "ParseUint")
        .map(|p| p as u16)
        .map_err(|e| format!("failed parsing port '{port}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn annotations(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn error_for(name: &str, value: &str) -> String {
        let mut m = Map::new();
        m.insert(name.to_string(), Value::String(value.to_string()));
        validate(&m, Behaviour::default()).unwrap_err().0
    }

    #[test]
    fn conformance_bad_values_name_the_annotation() {
        let msg = error_for(INCLUDE_OUTBOUND_IP_RANGES, "bad");
        assert!(msg.to_lowercase().contains("includeipranges"), "{msg}");
        assert!(msg.contains(
            "invalid value 'bad' for annotation 'traffic.sidecar.istio.io/includeOutboundIPRanges': \
             includeIPRanges invalid: failed parsing cidr 'bad': netip.ParsePrefix(\"bad\"): no '/'"
        ), "{msg}");
        let msg = error_for(INCLUDE_INBOUND_PORTS, "bad");
        assert!(msg.to_lowercase().contains("includeinboundports"), "{msg}");
        assert!(
            msg.contains("strconv.ParseUint: parsing \"bad\": invalid syntax"),
            "{msg}"
        );
        let msg = error_for(EXCLUDE_OUTBOUND_PORTS, "bad");
        assert!(msg.to_lowercase().contains("excludeoutboundports"), "{msg}");
        assert!(
            msg.starts_with("1 error occurred:\n\t* invalid value 'bad'"),
            "{msg}"
        );
    }

    #[test]
    fn every_invalid_value_is_rejected_with_its_annotation_name() {
        let cases = [
            (INTERCEPTION_MODE, "redirect"),
            (INTERCEPTION_MODE, ""),
            (STATUS_PORT, "65536"),
            (STATUS_PORT, "abc"),
            (READINESS_INITIAL_DELAY, "-1"),
            (READINESS_PERIOD, "4294967296"),
            (READINESS_FAILURE_THRESHOLD, "x"),
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/33"),
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8, 10.1.0.0/16"),
            (INCLUDE_OUTBOUND_IP_RANGES, "**"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "*"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.1"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "fe80::1%eth0/64"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/x"),
            (INCLUDE_INBOUND_PORTS, "80,"),
            (INCLUDE_INBOUND_PORTS, "70000"),
            (EXCLUDE_INBOUND_PORTS, "*"),
            (EXCLUDE_INBOUND_PORTS, "1,two"),
            (EXCLUDE_OUTBOUND_PORTS, "-5"),
            (PROMETHEUS_MERGE_METRICS, "yes"),
            (PROXY_CONFIG, "{\"statusPort\": 0}"),
            (PROXY_CONFIG, "{not json"),
            (PROXY_CONFIG, "concurrency: -1"),
            (PROXY_CONFIG, "discoveryAddress: foo"),
            (PROXY_CONFIG, "interceptionMode: SOMETIMES"),
            (PROXY_CONFIG, "- a list"),
            (PROXY_CPU, "lots"),
            (PROXY_MEMORY_LIMIT, "1Gb"),
        ];
        for (name, value) in cases {
            let msg = error_for(name, value);
            assert!(
                msg.contains(&format!("for annotation '{name}'")),
                "{name}={value}: {msg}"
            );
            assert!(
                msg.contains(&format!("invalid value '{value}'")),
                "{name}={value}: {msg}"
            );
        }
    }

    #[test]
    fn valid_values_pass() {
        let ok = annotations(json!({
            INTERCEPTION_MODE: "TPROXY",
            STATUS_PORT: "0",
            READINESS_INITIAL_DELAY: "100",
            INCLUDE_OUTBOUND_IP_RANGES: "*",
            EXCLUDE_OUTBOUND_IP_RANGES: "10.96.0.2/24,10.96.0.3/24,2001:db8::/32",
            INCLUDE_INBOUND_PORTS: "*",
            EXCLUDE_INBOUND_PORTS: " 4, 5,6 ",
            EXCLUDE_OUTBOUND_PORTS: "",
            PROMETHEUS_MERGE_METRICS: "False",
            PROXY_CONFIG: "{ \"holdApplicationUntilProxyStarts\": true }",
            PROXY_CPU: "100m",
            PROXY_MEMORY: "1Gi",
            "sidecar.istio.io/inject": "whatever",
            KUBEVIRT_INTERFACES: "net1",
        }));
        assert_eq!(validate(&ok, Behaviour::default()), Ok(()));
    }

    #[test]
    fn proxy_config_yaml_is_accepted() {
        // traffic-annotations golden: block YAML, not JSON.
        let yaml = "discoveryAddress: foo:123\nconcurrency: 0\nproxyMetadata:\n  FOO: bar";
        let ok = annotations(json!({ PROXY_CONFIG: yaml }));
        assert_eq!(validate(&ok, Behaviour::default()), Ok(()));
        let ok = annotations(
            json!({ PROXY_CONFIG: "holdApplicationUntilProxyStarts: true\nstatusPort: 15021" }),
        );
        assert_eq!(validate(&ok, Behaviour::default()), Ok(()));
    }

    #[test]
    fn several_errors_are_all_reported() {
        let bad = annotations(json!({
            INCLUDE_INBOUND_PORTS: "x",
            EXCLUDE_OUTBOUND_PORTS: "y",
        }));
        let msg = validate(&bad, Behaviour::default()).unwrap_err().0;
        assert!(msg.starts_with("2 errors occurred:"), "{msg}");
        assert!(msg.contains(INCLUDE_INBOUND_PORTS) && msg.contains(EXCLUDE_OUTBOUND_PORTS));
    }

    #[test]
    fn port_parsing_matches_istio() {
        assert_eq!(parse_ports(" 1,2 , 3 "), Ok(vec![1, 2, 3]));
        assert_eq!(parse_ports(""), Ok(vec![]));
        assert!(parse_ports("1,,2").is_err());
        assert_eq!(
            parse_ports("bad").unwrap_err(),
            "failed parsing port 'bad': failed parsing port 'bad': strconv.ParseUint: parsing \"bad\": invalid syntax"
        );
    }

    fn at(version: &str, pairs: &[(&str, &str)]) -> Result<(), InjectError> {
        let b = crate::versions::IstioVersion::parse(version)
            .unwrap()
            .behaviour();
        let m: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        validate(&m, b)
    }

    /// R09: enableCoreDump must be a Go bool up to 1.24 only.
    #[test]
    fn core_dump_annotation_checked_until_1_25() {
        let msg = at("1.24", &[(ENABLE_CORE_DUMP, "sometimes")])
            .unwrap_err()
            .0;
        assert!(
            msg.contains(
                "invalid value 'sometimes' for annotation 'sidecar.istio.io/enableCoreDump': \
                 strconv.ParseBool: parsing \"sometimes\": invalid syntax"
            ),
            "{msg}"
        );
        assert_eq!(at("1.22", &[(ENABLE_CORE_DUMP, "TRUE")]), Ok(()));
        assert_eq!(at("1.25", &[(ENABLE_CORE_DUMP, "sometimes")]), Ok(()));
    }

    /// R21: proxy CPU/memory annotations are validated from 1.27 (control characters
    /// first); before, validation lets them through (rendering decides).
    #[test]
    fn proxy_resource_annotations_checked_from_1_27() {
        for name in [PROXY_CPU, PROXY_MEMORY, PROXY_CPU_LIMIT, PROXY_MEMORY_LIMIT] {
            let msg = at("1.27", &[(name, "lots")]).unwrap_err().0;
            assert!(
                msg.contains(&format!("invalid value 'lots' for annotation '{name}'")),
                "{msg}"
            );
            assert_eq!(at("1.26", &[(name, "lots")]), Ok(()));
        }
        let msg = at("1.32", &[(PROXY_CPU, "1\n")]).unwrap_err().0;
        assert!(msg.contains("value contains control characters"), "{msg}");
        assert_eq!(at("1.27", &[(PROXY_MEMORY, "512Mi")]), Ok(()));
    }

    /// R29: interface-list annotations are validated from 1.30.
    #[test]
    fn interface_names_checked_from_1_30() {
        for name in [
            EXCLUDE_INTERFACES,
            KUBEVIRT_INTERFACES,
            REROUTE_VIRTUAL_INTERFACES,
        ] {
            for bad in [
                "eth0 -d 10.0.0.50",
                "eth0,,eth1",
                "averyveryverylongname",
                "eth0;reboot",
                "$(id)",
                "net/1",
            ] {
                let msg = at("1.30", &[(name, bad)]).unwrap_err().0;
                assert!(
                    msg.contains(&format!("invalid value '{bad}' for annotation '{name}'")),
                    "{msg}"
                );
                assert_eq!(at("1.29", &[(name, bad)]), Ok(()), "{name}={bad}");
            }
            for good in ["", "eth0", " eth0 , net1", "0_a.b-c", "abcdefghijklmno"] {
                assert_eq!(at("1.32", &[(name, good)]), Ok(()), "{name}={good:?}");
            }
        }
    }
}
