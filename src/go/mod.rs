//! Text as Istio's Go code writes and reads it: `encoding/json` ([`json`]: the one string
//! escaper, struct fields in Go order), `fmt`/`strconv` ([`fmt`]), and Kubernetes'
//! `resource.Quantity` ([`quantity`]), and sigs.k8s.io/yaml's YAML 1.1 scalars ([`yaml`]). The
//! lowest layer: it depends on the Pod schema only.

pub mod fmt;
pub mod json;
pub mod quantity;
pub mod yaml;
