//! The workload a pod belongs to (`kube.GetDeployMetaFromPod`): its controller ownerReference,
//! with a ReplicaSet carrying the pod-template-hash mapped back to its Deployment and a Job
//! named `<cronjob>-<timestamp>` mapped back to its CronJob.

use crate::json::Path;
use serde_json::Value;

use super::mesh::str_at;

/// Name, namespace and type of the pod's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
}

impl Workload {
    /// `ISTIO_META_OWNER`, or None when the name or API version is unknown.
    ///
    /// The kind is lowercased as ASCII. Istio lowercases it with Go's Unicode `ToLower`, which
    /// is the same for every kind Kubernetes can name (built-in kinds, and CRD kinds, which the
    /// API server requires to be DNS-1035 labels once lowercased); only a hand-written owner
    /// reference with a non-ASCII kind keeps those letters as written. Unicode case tables
    /// were 18 KB of policy.wasm for this one call.
    pub fn owner(&self) -> Option<String> {
        if self.name.is_empty() || self.api_version.is_empty() {
            return None;
        }
        let ns = if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        };
        Some(
            [
                "kubernetes://apis/",
                &self.api_version,
                "/namespaces/",
                ns,
                "/",
                &self.kind.to_ascii_lowercase(),
                "s/",
                &self.name,
            ]
            .concat(),
        )
    }
}

/// Whether `s` is a CronJob-created job suffix: 8 to 11 digits (a scheduled-time stamp).
fn is_cron_suffix(s: &str) -> bool {
    (8..=11).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Derive the workload of `pod`, created in `namespace`.
pub fn workload_of(pod: &Value, namespace: &str) -> Workload {
    let label = |k: &str| {
        pod.at(&["metadata", "labels"])
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let mut w = Workload {
        name: str_at(pod, &["metadata", "name"]).unwrap_or("").to_string(),
        namespace: str_at(pod, &["metadata", "namespace"])
            .filter(|s| !s.is_empty())
            .unwrap_or(namespace)
            .to_string(),
        api_version: "v1".into(),
        kind: "Pod".into(),
    };
    if str_at(pod, &["metadata", "generateName"])
        .unwrap_or("")
        .is_empty()
    {
        return w;
    }
    let controller = pod
        .at(&["metadata", "ownerReferences"])
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let Some(owner) = controller else {
        return w;
    };
    let text = |k: &str| {
        owner
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    w.api_version = text("apiVersion");
    w.kind = text("kind");
    w.name = text("name");
    let hash = label("pod-template-hash");
    if w.kind == "ReplicaSet" && !hash.is_empty() {
        if let Some(deploy) = w.name.strip_suffix(hash).and_then(|n| n.strip_suffix('-')) {
            w.name = deploy.to_string();
            w.kind = "Deployment".into();
        }
    } else if w.kind == "ReplicationController" && !label("deploymentconfig").is_empty() {
        w.name = label("deploymentconfig").to_string();
        w.kind = "DeploymentConfig".into();
    } else if w.kind == "Job" {
        if let Some((cron, suffix)) = w.name.rsplit_once('-') {
            if is_cron_suffix(suffix) {
                w.name = cron.to_string();
                w.kind = "CronJob".into();
                w.api_version = "batch/v1".into();
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replicaset_with_hash_maps_to_deployment() {
        let pod = json!({"metadata": {"generateName": "hello-fake-", "labels": {"pod-template-hash": "fake"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hello-fake", "controller": true}]}});
        let w = workload_of(&pod, "");
        assert_eq!(w.name, "hello");
        assert_eq!(
            w.owner().unwrap(),
            "kubernetes://apis/apps/v1/namespaces/default/deployments/hello"
        );
    }

    #[test]
    fn bare_pod_is_its_own_workload() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}});
        let w = workload_of(&pod, "other");
        assert_eq!(
            w.owner().unwrap(),
            "kubernetes://apis/v1/namespaces/ns/pods/p"
        );
    }

    #[test]
    fn the_owner_kind_is_lowercased_as_ascii() {
        let pod = json!({"metadata": {"generateName": "w-", "ownerReferences": [
            {"apiVersion": "example.com/v1", "kind": "MyÉtat", "name": "w", "controller": true}]}});
        let w = workload_of(&pod, "ns");
        assert_eq!(
            w.owner().unwrap(),
            "kubernetes://apis/example.com/v1/namespaces/ns/myÉtats/w"
        );
    }

    #[test]
    fn cronjob_job_maps_to_cronjob() {
        let pod = json!({"metadata": {"generateName": "x-",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "backup-28391234", "controller": true}]}});
        let w = workload_of(&pod, "ns");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("CronJob", "backup"));
    }
}
