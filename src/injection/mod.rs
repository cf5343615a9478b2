//! The `proxy.istio.io/config` YAML reader, until it moves under `go/` (issue 16: the
//! dependency swap lands separately). A leaf: it depends on nothing in the crate.

pub mod proxy_yaml;
