use super::*;
use crate::schema::{CONTAINER, PROBER};
use serde_json::json;

fn go_string(s: &str) -> String {
    let mut out = String::new();
    write_string(&mut out, s);
    out
}

#[test]
fn marshal_orders_fields_and_escapes_like_go() {
    let c = json!({
        "tty": false, "name": "x", "ports": [{"protocol": "TCP", "containerPort": 80, "name": "http"}],
        "env": [{"value": "a<b&c>", "name": "E"}], "unknownField": 1, "stdin": true,
        "readinessProbe": {"grpc": {"port": 9}, "periodSeconds": 0}
    });
    assert_eq!(
        marshal(&c, &Ty::Struct(CONTAINER)),
        "{\"name\":\"x\",\"ports\":[{\"name\":\"http\",\"containerPort\":80,\"protocol\":\"TCP\"}],\
\"env\":[{\"name\":\"E\",\"value\":\"a\\u003cb\\u0026c\\u003e\"}],\"resources\":{},\
\"readinessProbe\":{\"grpc\":{\"port\":9,\"service\":null}},\"stdin\":true,\"unknownField\":1}"
    );
}

#[test]
fn istio_types_come_from_the_schema_too() {
    let probers = json!({"/app-health/a/readyz": {"timeoutSeconds": 3, "httpGet": {"port": 80, "path": "/r"}}});
    assert_eq!(
        marshal(&probers, &Ty::Map(&Ty::Struct(PROBER))),
        r#"{"/app-health/a/readyz":{"httpGet":{"path":"/r","port":80},"timeoutSeconds":3}}"#
    );
    let quantities = json!({"resources": {"limits": {"cpu": "2000m", "memory": "1024Mi"}}});
    assert_eq!(
        marshal(&quantities, &Ty::Struct(CONTAINER)),
        r#"{"name":"","resources":{"limits":{"cpu":"2","memory":"1Gi"}}}"#
    );
}

/// Go's `encoding/json` (HTML escaping on, as `json.Marshal` has it): every output the
/// injector writes for Istio goes through this one escaper. The env values
/// (`ISTIO_META_POD_PORTS`, `ISTIO_PROMETHEUS_ANNOTATIONS`, `PROXY_CONFIG`) used to escape
/// only `<`, `>`, `&` and left U+2028/U+2029 as they were.
#[test]
fn strings_are_escaped_as_go_escapes_them() {
    for (s, go) in [
        ("plain é ü 日本", r#""plain é ü 日本""#),
        ("a<b>&c", r#""a\u003cb\u003e\u0026c""#),
        ("line\u{2028}para\u{2029}", r#""line\u2028para\u2029""#),
        ("q\"b\\", r#""q\"b\\""#),
        ("\u{8}\u{c}\n\r\t", r#""\b\f\n\r\t""#),
        ("\u{0}\u{1f}\u{7f}", "\"\\u0000\\u001f\u{7f}\""),
    ] {
        assert_eq!(go_string(s), go, "{s:?}");
    }
}

#[test]
fn object_keeps_field_order_and_escapes_values() {
    let (scrape, path) = (json!("true"), json!("/m\u{2028}<x>"));
    assert_eq!(
        object(&[("scrape", &scrape), ("path", &path)]),
        r#"{"scrape":"true","path":"/m\u2028\u003cx\u003e"}"#
    );
    assert_eq!(object(&[]), "{}");
}
