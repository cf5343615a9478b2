#!/usr/bin/env python3
"""Writes the `revinject bench` workloads: for each one a directory with the AdmissionReview
(`request.json`), the policy settings (`settings.json`), the pod's Namespace (`namespace.json`,
what `kubewarden/kubernetes/get_resource` answers), and a replay case (`case.yaml` +
`session.yml`) so that `revinject replay test-data/` checks each workload still takes the path
it is meant to measure. Rerun after editing: `python3 test-data/bench/generate.py`."""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
HUB = {"global": {"hub": "registry.istio.io/testing", "tag": "latest"}}


def owner(name):
    return [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
             "uid": "6f1c7a52-3d55-4c1e-9a57-0d7f4e0b1c22", "controller": True,
             "blockOwnerDeletion": True}]


def hello_pod(namespace):
    """inputs/hello.yaml of the conformance suite, as its Deployment's ReplicaSet creates it."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "hello-7f8b9c6d5-", "namespace": namespace,
            "labels": {"app": "hello", "tier": "backend", "track": "stable",
                       "pod-template-hash": "7f8b9c6d5"},
            "ownerReferences": owner("hello-7f8b9c6d5"),
        },
        "spec": {"containers": [{
            "name": "hello", "image": "fake.docker.io/google-samples/hello-go-gke:1.0",
            "ports": [{"name": "http", "containerPort": 80}],
        }]},
    }


def defaults(container):
    """Fields the API server defaults on every container before webhooks run."""
    container.setdefault("imagePullPolicy", "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    return container


def env(prefix, n):
    out = []
    for i in range(n):
        if i % 10 == 3:
            out.append({"name": f"{prefix}_SECRET_{i}", "valueFrom": {"secretKeyRef": {
                "name": "app-secrets", "key": f"key-{i}"}}})
        elif i % 10 == 7:
            out.append({"name": f"{prefix}_FIELD_{i}", "valueFrom": {"fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.name"}}})
        else:
            out.append({"name": f"{prefix}_VAR_{i}", "value": f"value-{i}-" + "x" * (i % 17)})
    return out


def realistic_pod(namespace):
    """A Deployment's pod of a typical service: 3 containers, httpGet/tcpSocket/grpc probes,
    40 env vars, 6 volumes, API-server defaults."""
    mounts = [{"name": "config", "mountPath": "/etc/app"},
              {"name": "tls", "mountPath": "/etc/tls", "readOnly": True},
              {"name": "kube-api-access-x2v9q", "readOnly": True,
               "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    app = defaults({
        "name": "api", "image": "registry.example.com/shop/api:2.14.1",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": env("API", 24),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                      "limits": {"cpu": "1", "memory": "512Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                           "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1,
                           "successThreshold": 1, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                          "periodSeconds": 20, "timeoutSeconds": 2, "successThreshold": 1,
                          "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                         "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                         "failureThreshold": 30},
        "volumeMounts": mounts + [{"name": "cache", "mountPath": "/var/cache/app"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    })
    cache = defaults({
        "name": "cache", "image": "registry.example.com/infra/memcached:1.6.29",
        "args": ["-m", "128", "-p", "11211"],
        "ports": [{"name": "memcache", "containerPort": 11211, "protocol": "TCP"}],
        "env": env("CACHE", 6),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "livenessProbe": {"tcpSocket": {"port": 11211}, "periodSeconds": 10,
                          "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"tcpSocket": {"port": "memcache"}, "periodSeconds": 10,
                           "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "volumeMounts": [{"name": "cache", "mountPath": "/data"}],
    })
    grpc = defaults({
        "name": "pricing", "image": "registry.example.com/shop/pricing:0.9.3",
        "command": ["/pricing"], "args": ["--listen=:50051", "--config=/etc/app/pricing.yaml"],
        "ports": [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"}],
        "env": env("PRICING", 10),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "readinessProbe": {"grpc": {"port": 50051, "service": ""}, "periodSeconds": 10,
                           "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "livenessProbe": {"grpc": {"port": 50051}, "periodSeconds": 10, "timeoutSeconds": 1,
                          "successThreshold": 1, "failureThreshold": 3},
        "volumeMounts": mounts + [{"name": "data", "mountPath": "/var/lib/pricing"},
                                  {"name": "podinfo", "mountPath": "/etc/podinfo"}],
    })
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "shop-api-6d9f7c8b4-", "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "shop-api", "app.kubernetes.io/part-of": "shop",
                       "app": "shop-api", "version": "v2", "pod-template-hash": "6d9f7c8b4"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                            "prometheus.io/path": "/metrics",
                            "kubectl.kubernetes.io/restartedAt": "2026-11-20T10:12:00Z"},
            "ownerReferences": owner("shop-api-6d9f7c8b4"),
        },
        "spec": {
            "containers": [app, cache, grpc],
            "volumes": [
                {"name": "config", "configMap": {"name": "shop-api-config", "defaultMode": 420}},
                {"name": "tls", "secret": {"secretName": "shop-api-tls", "defaultMode": 420}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "128Mi"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "pricing-data"}},
                {"name": "podinfo", "downwardAPI": {"defaultMode": 420, "items": [
                    {"path": "labels", "fieldRef": {"apiVersion": "v1",
                                                    "fieldPath": "metadata.labels"}}]}},
                {"name": "kube-api-access-x2v9q", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt",
                                   "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
            ],
            "serviceAccountName": "shop-api", "serviceAccount": "shop-api",
            "securityContext": {"fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
            "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchLabels": {"app": "shop-api"}}}}]}},
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {},
    }


def env2000_pod(namespace):
    """Istio's BenchmarkInjection shape: one container carrying 2,000 env vars."""
    pod = hello_pod(namespace)
    pod["metadata"]["generateName"] = "env2000-5c4b3a291-"
    pod["metadata"]["labels"] = {"app": "env2000", "pod-template-hash": "5c4b3a291"}
    pod["metadata"]["ownerReferences"] = owner("env2000-5c4b3a291")
    container = pod["spec"]["containers"][0]
    container["name"] = "env2000"
    container["env"] = [{"name": f"ENV_VAR_{i:04d}", "value": f"value-of-environment-variable-{i}"}
                        for i in range(2000)]
    return pod


def review(uid, namespace, pod):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                     "uid": "506304fe-ec91-0835-0ba5-c4a7b3c12187",
                     "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                "system:authenticated"]},
        "object": pod, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }}


def namespace(name, labels):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": "ebde9309-dc79-df0f-58eb-d80645183d04",
                         "resourceVersion": "48213",
                         "creationTimestamp": "2026-10-02T08:14:55Z",
                         "labels": dict(labels, **{"kubernetes.io/metadata.name": name})},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


DEFAULT_REV = {"defaultRevision": True, "values": HUB}
CANARY = {"revision": "1-24", "tags": ["prod"], "values": HUB}

WORKLOADS = [
    ("hello", "the conformance suite's hello pod (inputs/hello.yaml) as its Deployment's "
     "ReplicaSet creates it, in a namespace labelled istio-injection=enabled",
     DEFAULT_REV, "apps", {"istio-injection": "enabled"}, hello_pod, True),
    ("realistic", "a typical service pod: 3 containers with httpGet, tcpSocket and grpc "
     "probes, 40 env vars, 6 volumes, a ReplicaSet owner, selected through the `prod` tag",
     CANARY, "shop", {"istio.io/rev": "prod"}, realistic_pod, True),
    ("env2000", "Istio's BenchmarkInjection case: one container with 2,000 env vars",
     DEFAULT_REV, "apps", {"istio-injection": "enabled"}, env2000_pod, True),
    ("skip", "the hello pod in a namespace of another revision: selection says no, no "
     "injection (the skip path)",
     CANARY, "legacy", {"istio.io/rev": "1-22"}, hello_pod, False),
]


def main():
    for i, (name, description, settings, ns, labels, make_pod, injected) in enumerate(WORKLOADS):
        d = os.path.join(HERE, name)
        os.makedirs(d, exist_ok=True)
        ns_obj = namespace(ns, labels)
        uid = f"00000000-0000-4000-8000-00000000000{i}"
        files = {
            "request.json": review(uid, ns, make_pod(ns)),
            "settings.json": settings,
            "namespace.json": ns_obj,
        }
        for fname, doc in files.items():
            with open(os.path.join(d, fname), "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
        session = ("---\n- type: Exchange\n  request: |\n    !KubernetesGetResource\n"
                   f"    api_version: v1\n    kind: Namespace\n    name: {ns}\n"
                   "    namespace: null\n    disable_cache: false\n  response:\n"
                   "    type: Success\n"
                   f"    payload: '{json.dumps(ns_obj, separators=(',', ':'))}'\n")
        with open(os.path.join(d, "session.yml"), "w") as f:
            f.write(session)
        with open(os.path.join(d, "case.yaml"), "w") as f:
            f.write(f"# Generated by ../generate.py: the `{name}` benchmark workload.\n"
                    f"description: >-\n  {description}\n"
                    "settings: settings.json\nsession: session.yml\n"
                    "expect:\n  allowed: true\n"
                    f"  injected: {'true' if injected else 'false'}\n"
                    f"  decision: {{inject: {'true' if injected else 'false'}}}\n")


if __name__ == "__main__":
    main()
