use super::*;
use serde_json::json;

fn hello_probes_pod() -> Value {
    // inputs/hello-probes.yaml after the template (proxy as a native sidecar).
    json!({
        "metadata": {"annotations": {"istio.io/rev": "default"}},
        "spec": {
            "initContainers": [
                {"name": "istio-init", "args": []},
                {"name": "istio-proxy", "env": [{"name": "TRUST_DOMAIN", "value": "cluster.local"}]}
            ],
            "containers": [
                {
                    "name": "hello",
                    "ports": [{"name": "http", "containerPort": 80}],
                    "livenessProbe": {"httpGet": {"port": "http"}},
                    "readinessProbe": {"httpGet": {"port": 3333}},
                    "lifecycle": {"preStop": {"httpGet": {"port": 91}}, "postStart": {"tcpSocket": {"port": 93}}}
                },
                {
                    "name": "world",
                    "ports": [{"name": "http", "containerPort": 90}],
                    "livenessProbe": {"httpGet": {"port": "http"}},
                    "readinessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}
                }
            ]
        }
    })
}

#[test]
fn hello_probes_golden() {
    let mut pod = hello_probes_pod();
    let env = rewrite_probes(&mut pod, 15020, true).unwrap();
    assert_eq!(
        env,
        r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/world/livez":{"httpGet":{"port":90}},"/app-lifecycle/hello/poststartz":{"tcpSocket":{"port":93}},"/app-lifecycle/hello/prestopz":{"httpGet":{"port":91}}}"#
    );
    let proxy_env = &pod["spec"]["initContainers"][1]["env"];
    assert_eq!(proxy_env[1], json!({"name": APP_PROBERS_ENV, "value": env}));
    let hello = &pod["spec"]["containers"][0];
    assert_eq!(
        hello["livenessProbe"],
        json!({"httpGet": {"path": "/app-health/hello/livez", "port": 15020}})
    );
    assert_eq!(
        hello["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/hello/readyz", "port": 15020}})
    );
    assert_eq!(
        hello["lifecycle"],
        json!({"preStop": {"httpGet": {"path": "/app-lifecycle/hello/prestopz", "port": 15020}},
               "postStart": {"httpGet": {"path": "/app-lifecycle/hello/poststartz", "port": 15020}}})
    );
    let world = &pod["spec"]["containers"][1];
    assert_eq!(
        world["readinessProbe"],
        json!({"exec": {"command": ["cat", "/tmp/healthy"]}})
    );
    assert_eq!(
        world["livenessProbe"]["httpGet"]["path"],
        "/app-health/world/livez"
    );
}

#[test]
fn disabled_by_annotation_or_values() {
    let mut pod = hello_probes_pod();
    let before = pod.clone();
    assert_eq!(rewrite_probes(&mut pod, 15020, false), None);
    assert_eq!(pod, before);
    pod["metadata"]["annotations"][REWRITE_APP_HTTP_PROBERS] = json!("false");
    assert_eq!(rewrite_probes(&mut pod, 15020, true), None);
    // hello-probes-with-flag-set-in-annotation: the annotation turns it on.
    pod["metadata"]["annotations"][REWRITE_APP_HTTP_PROBERS] = json!("true");
    assert!(rewrite_probes(&mut pod, 15020, false).is_some());
    // An invalid bool falls back to the values setting.
    let mut pod = hello_probes_pod();
    pod["metadata"]["annotations"][REWRITE_APP_HTTP_PROBERS] = json!("maybe");
    assert_eq!(rewrite_probes(&mut pod, 15020, false), None);
}

#[test]
fn tcp_grpc_timeouts_scheme_and_status_port_annotation() {
    let mut pod = json!({
        "metadata": {"annotations": {STATUS_PORT: "123"}},
        "spec": {"containers": [
            {"name": "app",
             "readinessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 5, "periodSeconds": 3},
             "livenessProbe": {"grpc": {"port": 9000}},
             "startupProbe": {"httpGet": {"port": 8443, "scheme": "HTTPS", "path": "/start", "host": "localhost",
                                          "httpHeaders": [{"name": "A", "value": "b"}]}}},
            {"name": "istio-proxy"}
        ]}
    });
    let env = rewrite_probes(&mut pod, 15020, true).unwrap();
    assert_eq!(
        env,
        r#"{"/app-health/app/livez":{"grpc":{"port":9000,"service":null}},"/app-health/app/readyz":{"tcpSocket":{"port":8080},"timeoutSeconds":5},"/app-health/app/startupz":{"httpGet":{"path":"/start","port":8443,"host":"localhost","scheme":"HTTPS","httpHeaders":[{"name":"A","value":"b"}]}}}"#
    );
    let app = &pod["spec"]["containers"][0];
    assert_eq!(
        app["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/app/readyz", "port": 123}, "timeoutSeconds": 5, "periodSeconds": 3})
    );
    assert_eq!(
        app["livenessProbe"],
        json!({"httpGet": {"path": "/app-health/app/livez", "port": 123}})
    );
    assert_eq!(
        app["startupProbe"]["httpGet"],
        json!({"port": 123, "scheme": "HTTP", "path": "/app-health/app/startupz", "host": "localhost",
               "httpHeaders": [{"name": "A", "value": "b"}]})
    );
    assert_eq!(
        pod["spec"]["containers"][1]["env"][0]["name"],
        APP_PROBERS_ENV
    );
}

#[test]
fn no_sidecar_no_probes() {
    let mut pod = json!({"spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 80}}}]}});
    let before = pod.clone();
    assert_eq!(rewrite_probes(&mut pod, 15020, true), None);
    assert_eq!(pod, before);
    let mut pod = json!({"spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]}});
    assert_eq!(rewrite_probes(&mut pod, 15020, true), None);
    assert!(pod["spec"]["containers"][1].get("env").is_none());
}

#[test]
fn unknown_named_port_is_rewritten_but_not_recorded() {
    let mut pod = json!({"spec": {"containers": [
        {"name": "app", "readinessProbe": {"httpGet": {"port": "nope"}}, "livenessProbe": {"httpGet": {"port": "8081"}}},
        {"name": "istio-proxy"}
    ]}});
    let env = rewrite_probes(&mut pod, 15020, true).unwrap();
    assert_eq!(
        env,
        r#"{"/app-health/app/livez":{"httpGet":{"port":8081}}}"#
    );
    assert_eq!(
        pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"],
        15020
    );
    // Re-injection does not record the rewritten probe as an original (found by fuzzing).
    pod["metadata"] = json!({"annotations": {"sidecar.istio.io/status": "{}"}});
    let again = rewrite_probes(&mut pod, 15020, true);
    assert!(
        again.as_ref().is_none_or(|e| !e.contains("readyz")),
        "{again:?}"
    );
}

#[test]
fn inbound_port_annotations_limit_rewriting() {
    let base = json!({"spec": {"containers": [
        {"name": "app", "readinessProbe": {"httpGet": {"port": 80}}, "livenessProbe": {"httpGet": {"port": 81}}},
        {"name": "istio-proxy"}
    ]}});
    let mut pod = base.clone();
    pod["metadata"] = json!({"annotations": {EXCLUDE_INBOUND_PORTS: "81"}});
    let env = rewrite_probes(&mut pod, 15020, true).unwrap();
    assert_eq!(env, r#"{"/app-health/app/readyz":{"httpGet":{"port":80}}}"#);
    assert_eq!(
        pod["spec"]["containers"][0]["livenessProbe"],
        json!({"httpGet": {"port": 81}})
    );
    let mut pod = base.clone();
    pod["metadata"] =
        json!({"annotations": {INCLUDE_INBOUND_PORTS: "81", EXCLUDE_INBOUND_PORTS: "81"}});
    let env = rewrite_probes(&mut pod, 15020, true).unwrap();
    assert_eq!(env, r#"{"/app-health/app/livez":{"httpGet":{"port":81}}}"#);
    assert_eq!(
        pod["spec"]["containers"][0]["readinessProbe"],
        json!({"httpGet": {"port": 80}})
    );
}

#[test]
fn merge_probers_on_reinjection() {
    // merge-probers: the old env is kept for already rewritten probes, the new container added.
    let old = r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/world/livez":{"httpGet":{"port":90}}}"#;
    let mut pod = json!({
        "metadata": {"annotations": {SIDECAR_STATUS: "{}"}},
        "spec": {"initContainers": [{"name": "istio-proxy", "env": [{"name": APP_PROBERS_ENV, "value": old}, {"name": "X", "value": "y"}]}],
                 "containers": [
            {"name": "hello", "ports": [{"name": "http", "containerPort": 80}],
             "livenessProbe": {"httpGet": {"path": "/app-health/hello/livez", "port": 15020}},
             "readinessProbe": {"httpGet": {"path": "/app-health/hello/readyz", "port": 15020}}},
            {"name": "world", "livenessProbe": {"httpGet": {"path": "/app-health/world/livez", "port": 15020}}},
            {"name": "new", "livenessProbe": {"httpGet": {"path": "/testLive", "port": 8008}}}
        ]}
    });
    let env = rewrite_probes(&mut pod, 15020, true).unwrap();
    assert_eq!(
        env,
        r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/new/livez":{"httpGet":{"path":"/testLive","port":8008}},"/app-health/world/livez":{"httpGet":{"port":90}}}"#
    );
    let proxy_env = pod["spec"]["initContainers"][0]["env"].as_array().unwrap();
    assert_eq!(proxy_env.len(), 2);
    assert_eq!(proxy_env[0]["value"], env);
    assert_eq!(
        pod["spec"]["containers"][0]["livenessProbe"],
        json!({"httpGet": {"path": "/app-health/hello/livez", "port": 15020}})
    );
    assert_eq!(
        pod["spec"]["containers"][2]["livenessProbe"]["httpGet"]["path"],
        "/app-health/new/livez"
    );
}

#[test]
fn native_sidecar_init_container_probes() {
    let mut pod = json!({"spec": {
        "initContainers": [
            {"name": "istio-init"}, {"name": "istio-proxy"},
            {"name": "other-sidecar", "restartPolicy": "Always", "readinessProbe": {"httpGet": {"port": 3333}}}
        ],
        "containers": [{"name": "hello"}]
    }});
    let env = rewrite_probes(&mut pod, 15020, true).unwrap();
    assert_eq!(
        env,
        r#"{"/app-health/other-sidecar/readyz":{"httpGet":{"port":3333}}}"#
    );
    assert_eq!(
        pod["spec"]["initContainers"][2]["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/other-sidecar/readyz", "port": 15020}})
    );
}

fn at(version: &str) -> Behaviour {
    crate::versions::IstioVersion::parse(version)
        .unwrap()
        .behaviour()
}

/// R10: lifecycle hooks are rewritten and recorded from 1.25; before, only probes.
#[test]
fn lifecycle_hooks_rewritten_from_1_25() {
    let mut pod = hello_probes_pod();
    let env = rewrite_probes_at(&mut pod, 15020, true, at("1.24")).unwrap();
    assert_eq!(
        env,
        r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/world/livez":{"httpGet":{"port":90}}}"#
    );
    let hello = &pod["spec"]["containers"][0];
    assert_eq!(
        hello["lifecycle"],
        json!({"preStop": {"httpGet": {"port": 91}}, "postStart": {"tcpSocket": {"port": 93}}})
    );
    assert_eq!(
        hello["livenessProbe"],
        json!({"httpGet": {"path": "/app-health/hello/livez", "port": 15020}})
    );
    let mut pod = hello_probes_pod();
    let env = rewrite_probes_at(&mut pod, 15020, true, at("1.25")).unwrap();
    assert!(env.contains(r#""/app-lifecycle/hello/prestopz":{"httpGet":{"port":91}}"#));
    assert_eq!(
        pod["spec"]["containers"][0]["lifecycle"]["postStart"],
        json!({"httpGet": {"path": "/app-lifecycle/hello/poststartz", "port": 15020}})
    );
    // A pod whose only rewritable handler is a hook gets no env before 1.25.
    let hook_only = || {
        json!({"spec": {"containers": [
            {"name": "istio-proxy"},
            {"name": "app", "lifecycle": {"preStop": {"tcpSocket": {"port": 8080}}}}]}})
    };
    assert_eq!(
        rewrite_probes_at(&mut hook_only(), 15020, true, at("1.22")),
        None
    );
    assert_eq!(
        rewrite_probes_at(&mut hook_only(), 15020, true, at("1.32")).as_deref(),
        Some(r#"{"/app-lifecycle/app/prestopz":{"tcpSocket":{"port":8080}}}"#)
    );
}

/// R25: re-injecting a pod whose proxy has no ISTIO_KUBE_APP_PROBERS adds it only from 1.27;
/// the probes are rewritten either way.
#[test]
fn probers_added_on_reinjection_from_1_27() {
    let pod = || {
        json!({
            "metadata": {"annotations": {SIDECAR_STATUS: "{}"}},
            "spec": {"containers": [
                {"name": "app", "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}},
                {"name": "istio-proxy", "env": [{"name": "X", "value": "y"}]}]}
        })
    };
    let mut old = pod();
    assert_eq!(rewrite_probes_at(&mut old, 15020, true, at("1.26")), None);
    assert_eq!(
        old["spec"]["containers"][1]["env"],
        json!([{"name": "X", "value": "y"}])
    );
    assert_eq!(
        old["spec"]["containers"][0]["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/app/readyz", "port": 15020}})
    );
    let mut new = pod();
    let env = rewrite_probes_at(&mut new, 15020, true, at("1.27")).unwrap();
    assert_eq!(
        env,
        r#"{"/app-health/app/readyz":{"httpGet":{"path":"/ready","port":8080}}}"#
    );
    assert_eq!(
        new["spec"]["containers"][1]["env"][1]["name"],
        APP_PROBERS_ENV
    );
}
