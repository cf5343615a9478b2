//! Traffic capture: the `istio-iptables` arguments of `istio-init` / `istio-validation`, and
//! with CNI the pod annotations that carry the same settings to the CNI plugin.

use crate::json::Path;
use serde_json::{Map, Value};

use crate::go::fmt::sprint;
use crate::values::annotations::{
    AGENT_LOG_LEVEL, EXCLUDE_INBOUND_PORTS, EXCLUDE_INTERFACES, EXCLUDE_OUTBOUND_IP_RANGES,
    EXCLUDE_OUTBOUND_PORTS, INCLUDE_INBOUND_PORTS, INCLUDE_OUTBOUND_IP_RANGES,
    INCLUDE_OUTBOUND_PORTS, INTERCEPTION_MODE, KUBEVIRT_INTERFACES, REROUTE_VIRTUAL_INTERFACES,
};
use crate::values::traffic::{
    annotation_or, exclude_inbound_ports, interception_mode, non_empty, optional_ports,
    virtual_interfaces, TrafficConfig,
};
use crate::values::InjectError;
use crate::versions::{Behaviour, Change};

use super::pasted_in_quotes;

/// The pod's annotations (empty when it has none).
fn pod_annotations(pod: &Value) -> Map<String, Value> {
    pod.at(&["metadata", "annotations"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The `args` of `istio-init` (or, with CNI, `istio-validation`) as the template writes them
/// at `behaviour`'s version.
pub fn init_args(
    pod: &Value,
    cfg: &TrafficConfig,
    behaviour: Behaviour,
) -> Result<Vec<String>, InjectError> {
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
    ];
    let interfaces = virtual_interfaces(&annotations, behaviour)
        .into_iter()
        .map(|v| ("-k", Some(v)));
    let excluded = ("-c", annotations.get(EXCLUDE_INTERFACES).map(sprint));
    for (flag, value) in optional.into_iter().chain(interfaces).chain([excluded]) {
        if let Some(v) = value {
            args.push(flag.to_string());
            args.push(v);
        }
    }
    let log_level = annotation_or(&annotations, AGENT_LOG_LEVEL, &cfg.log_level);
    args.push(
        [
            "--log_output_level=",
            &pasted_in_quotes(&log_level, behaviour, AGENT_LOG_LEVEL)?,
        ]
        .concat(),
    );
    if cfg.log_as_json {
        args.push("--log_as_json".into());
    }
    if cfg.cni(behaviour) {
        args.push("--run-validation".into());
        args.push("--skip-rule-apply".into());
    } else if cfg.force_apply_iptables && behaviour.has(Change::ForceApplyIptables) {
        args.push("--force-apply".into());
    }
    if cfg.native_nftables && behaviour.has(Change::NativeNftables) {
        args.push("--native-nftables".into());
    }
    Ok(args)
}

/// With CNI, the template records the capture settings as pod annotations for the CNI plugin
/// (in this order; empty optional ones are left out).
pub fn cni_annotations(
    annotations: &Map<String, Value>,
    cfg: &TrafficConfig,
    behaviour: Behaviour,
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
    let inbound = annotation_or(
        annotations,
        INCLUDE_INBOUND_PORTS,
        &cfg.include_inbound_ports,
    );
    // Up to 1.24 written only when non-empty (R12).
    if !inbound.is_empty() || behaviour.has(Change::CniIncludeInboundPortsAlways) {
        out.push((INCLUDE_INBOUND_PORTS.to_string(), inbound));
    }
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
        // The reroute annotation is read from 1.25 (R13).
        if name == REROUTE_VIRTUAL_INTERFACES && !behaviour.has(Change::RerouteVirtualInterfaces) {
            continue;
        }
        if let Some(v) = non_empty(annotations, name) {
            out.push((name.to_string(), v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::annotations::STATUS_PORT;
    use crate::values::helm::{Helm, Install};
    use serde_json::json;

    #[test]
    fn sprint_prints_numbers_as_go_does() {
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
            assert_eq!(sprint(&v), want, "{v}");
        }
    }

    fn helm(values: &Value) -> Helm {
        Helm::new(values, &Install::default())
    }

    fn pod(annotations: Value) -> Value {
        json!({"metadata": {"annotations": annotations}, "spec": {}})
    }

    fn args(pod: &Value, cfg: &TrafficConfig) -> String {
        init_args(pod, cfg, Behaviour::default()).unwrap().join(" ")
    }

    const DEFAULT: &str =
        "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i * -x  -b * -d 15090,15021,15020";

    #[test]
    fn default_args_match_hello_golden() {
        let cfg = TrafficConfig::default();
        let got = init_args(&json!({"metadata": {}}), &cfg, Behaviour::default()).unwrap();
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
        let got = init_args(&p, &cfg, Behaviour::default()).unwrap();
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
        let got = cni_annotations(&Map::new(), &cfg, Behaviour::default());
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
        let got = cni_annotations(
            a["metadata"]["annotations"].as_object().unwrap(),
            &cfg,
            Behaviour::default(),
        );
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
