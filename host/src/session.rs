//! kwctl host-capabilities sessions: the YAML `kwctl run --record-host-capabilities-interactions`
//! writes and `--replay-host-capabilities-interactions` reads.
//!
//! ```yaml
//! - type: Exchange
//!   request: |
//!     !KubernetesGetResource
//!     api_version: v1
//!     kind: Namespace
//!     name: team-a
//!     namespace: null
//!     disable_cache: false
//!   response:
//!     type: Success            # or `type: Error` with `message: ...`
//!     payload: '{"apiVersion":"v1","kind":"Namespace",...}'
//! ```
//!
//! `request` is itself a YAML document (kwctl stores the serialized callback request as a
//! string). Replay is strict FIFO like kwctl's: the n-th host call must equal the n-th recorded
//! request, with kwctl's error messages on a mismatch or when the session is exhausted.

use anyhow::{anyhow, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::runtime::HostCapabilities;

/// One entry of the session file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
struct Exchange {
    request: String,
    response: Response,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Response {
    Success { payload: String },
    Error { message: String },
}

/// The host calls a session can hold for this policy. Field names and the `Debug` output
/// follow policy-evaluator's `CallbackRequestType`, so mismatch errors read like kwctl's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallbackRequest {
    KubernetesGetResource {
        api_version: String,
        kind: String,
        name: String,
        namespace: Option<String>,
        disable_cache: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field_masks: Option<BTreeSet<String>>,
    },
}

/// The guest's `get_resource` payload (kubewarden-policy-sdk `GetResourceRequest`).
#[derive(Deserialize)]
struct GetResourceArgs {
    api_version: String,
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    disable_cache: bool,
    #[serde(default)]
    field_masks: Option<BTreeSet<String>>,
}

impl CallbackRequest {
    /// Decode the guest's `kubernetes/get_resource` payload.
    pub fn get_resource(payload: &Value) -> Result<CallbackRequest, String> {
        let a = GetResourceArgs::deserialize(payload)
            .map_err(|e| format!("cannot decode the get_resource request: {e}"))?;
        Ok(CallbackRequest::KubernetesGetResource {
            api_version: a.api_version,
            kind: a.kind,
            name: a.name,
            namespace: a.namespace,
            disable_cache: a.disable_cache,
            field_masks: a.field_masks,
        })
    }

    /// A `v1/Namespace` lookup as kubewarden-policy-sdk issues it.
    pub fn namespace(name: &str) -> CallbackRequest {
        CallbackRequest::KubernetesGetResource {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            name: name.into(),
            namespace: None,
            disable_cache: false,
            field_masks: None,
        }
    }
}

/// A recorded answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Success(Value),
    Error(String),
}

/// A loaded session being replayed. `Session::default()` stands for "no session given": every
/// lookup fails saying so (a loaded empty session fails with kwctl's exhaustion error).
#[derive(Debug, Default)]
pub struct Session {
    exchanges: Vec<(CallbackRequest, Answer)>,
    cursor: AtomicUsize,
    loaded: bool,
}

impl Session {
    pub fn load(path: &Path) -> anyhow::Result<Session> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read host capabilities session {}", path.display()))?;
        Session::parse(&text)
            .with_context(|| format!("invalid host capabilities session {}", path.display()))
    }

    pub fn parse(yaml: &str) -> anyhow::Result<Session> {
        let exchanges: Option<Vec<Exchange>> = serde_norway::from_str(yaml)
            .map_err(|e| anyhow!("not a list of `type: Exchange` entries: {e}"))?;
        let exchanges = exchanges
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, exchange)| {
                let request: CallbackRequest = serde_norway::from_str(&exchange.request)
                    .map_err(|e| anyhow!("exchange {i}: unsupported request: {e}"))?;
                let answer = match exchange.response {
                    Response::Success { payload } => {
                        Answer::Success(serde_json::from_str(&payload).map_err(|e| {
                            anyhow!("exchange {i}: the Success payload is not JSON: {e}")
                        })?)
                    }
                    Response::Error { message } => Answer::Error(message),
                };
                Ok((request, answer))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Session {
            exchanges,
            cursor: AtomicUsize::new(0),
            loaded: true,
        })
    }

    /// Serialize exchanges in kwctl's format (for fixtures written by tools).
    pub fn to_yaml(exchanges: &[(CallbackRequest, Answer)]) -> anyhow::Result<String> {
        let entries = exchanges
            .iter()
            .map(|(request, answer)| {
                Ok(Exchange {
                    request: serde_norway::to_string(request)?,
                    response: match answer {
                        Answer::Success(v) => Response::Success {
                            payload: serde_json::to_string(v)?,
                        },
                        Answer::Error(m) => Response::Error { message: m.clone() },
                    },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(serde_norway::to_string(&entries)?)
    }

    /// The next recorded answer, if `request` is the next recorded request.
    pub fn replay(&self, request: &CallbackRequest) -> Result<Value, String> {
        if !self.loaded {
            return Err(format!(
                "no host capabilities session was given (--replay-host-capabilities-interactions), \
                 nothing answers {request:?}"
            ));
        }
        let index = self.cursor.fetch_add(1, Ordering::SeqCst);
        match self.exchanges.get(index) {
            None => Err("the list of recorded responses is empty or has been exhausted".into()),
            Some((expected, _)) if expected != request => Err(format!(
                "Replay error: unexpected request. Was expecting {expected:?}, got {request:?} instead"
            )),
            Some((_, Answer::Success(v))) => Ok(v.clone()),
            Some((_, Answer::Error(m))) => Err(m.clone()),
        }
    }

    /// The recorded exchanges, in order.
    pub fn exchanges(&self) -> &[(CallbackRequest, Answer)] {
        &self.exchanges
    }

    /// Exchanges recorded in the session.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// Exchanges not replayed yet (kwctl only warns about these).
    pub fn remaining(&self) -> usize {
        self.exchanges
            .len()
            .saturating_sub(self.cursor.load(Ordering::SeqCst))
    }

    /// Start over from the first exchange (to evaluate the same request again).
    pub fn rewind(&self) {
        self.cursor.store(0, Ordering::SeqCst);
    }
}

impl HostCapabilities for Session {
    fn get_resource(&self, request: &Value) -> Result<Value, String> {
        self.replay(&CallbackRequest::get_resource(request)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SESSION: &str = r#"
- type: Exchange
  request: |
    !KubernetesGetResource
    api_version: v1
    kind: Namespace
    name: team-a
    namespace: null
    disable_cache: false
  response:
    type: Success
    payload: '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a","labels":{"istio.io/rev":"asm-1233-2"}}}'
- type: Exchange
  request: |
    !KubernetesGetResource
    api_version: v1
    kind: Namespace
    name: gone
    namespace: null
    disable_cache: false
  response:
    type: Error
    message: namespaces "gone" not found
"#;

    fn sdk_payload(name: &str) -> Value {
        json!({"api_version": "v1", "kind": "Namespace", "name": name, "namespace": null,
               "disable_cache": false, "field_masks": null})
    }

    #[test]
    fn replays_in_order_then_reports_exhaustion() {
        let s = Session::parse(SESSION).unwrap();
        assert_eq!(s.len(), 2);
        let ns = s.get_resource(&sdk_payload("team-a")).unwrap();
        assert_eq!(ns["metadata"]["labels"]["istio.io/rev"], "asm-1233-2");
        assert_eq!(
            s.get_resource(&sdk_payload("gone")).unwrap_err(),
            "namespaces \"gone\" not found"
        );
        assert_eq!(s.remaining(), 0);
        assert_eq!(
            s.get_resource(&sdk_payload("team-a")).unwrap_err(),
            "the list of recorded responses is empty or has been exhausted"
        );
        s.rewind();
        assert!(s.get_resource(&sdk_payload("team-a")).is_ok());
    }

    #[test]
    fn mismatch_names_both_requests() {
        let s = Session::parse(SESSION).unwrap();
        let err = s.get_resource(&sdk_payload("other")).unwrap_err();
        assert!(
            err.starts_with("Replay error: unexpected request."),
            "{err}"
        );
        assert!(
            err.contains("name: \"team-a\"") && err.contains("name: \"other\""),
            "{err}"
        );
        // The cursor moved on, as in kwctl: the next call is checked against exchange 1.
        assert_eq!(
            s.get_resource(&sdk_payload("gone")).unwrap_err(),
            "namespaces \"gone\" not found"
        );
    }

    #[test]
    fn round_trips_through_kwctl_format() {
        let exchanges = vec![
            (
                CallbackRequest::namespace("a"),
                Answer::Success(json!({"kind": "Namespace"})),
            ),
            (
                CallbackRequest::namespace("b"),
                Answer::Error("boom".into()),
            ),
        ];
        let yaml = Session::to_yaml(&exchanges).unwrap();
        assert!(
            yaml.contains("type: Exchange") && yaml.contains("!KubernetesGetResource"),
            "{yaml}"
        );
        let s = Session::parse(&yaml).unwrap();
        assert_eq!(s.exchanges, exchanges);
    }

    #[test]
    fn newer_kwctl_recordings_with_field_masks_match() {
        let yaml = "- type: Exchange\n  request: |\n    !KubernetesGetResource\n    api_version: v1\n    \
                    kind: Namespace\n    name: a\n    namespace: null\n    disable_cache: false\n    \
                    field_masks: null\n  response:\n    type: Success\n    payload: '{}'\n";
        let s = Session::parse(yaml).unwrap();
        assert_eq!(s.get_resource(&sdk_payload("a")).unwrap(), json!({}));
    }

    #[test]
    fn bad_sessions_are_rejected_with_the_reason() {
        let err = Session::parse(
            "- type: Exchange\n  request: '!Nope {}'\n  response: {type: Error, message: x}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("exchange 0"), "{err}");
        assert!(Session::parse("").unwrap().is_empty());
        let err = Session::default()
            .get_resource(&sdk_payload("a"))
            .unwrap_err();
        assert!(
            err.starts_with("no host capabilities session was given"),
            "{err}"
        );
        let err = Session::parse("[]")
            .unwrap()
            .get_resource(&sdk_payload("a"))
            .unwrap_err();
        assert!(err.contains("exhausted"), "{err}");
        assert!(Session::parse("{}").is_err());
    }
}
