//! The browser playground: the policy's own selection and injection code
//! (`revision_injector::admission::evaluate`) built for `wasm32-unknown-unknown` with
//! wasm-bindgen. The logic is plain Rust in [`playground`], tested natively.

pub mod inputs;
pub mod playground;

use wasm_bindgen::prelude::*;

/// `evaluate(JSON.stringify({revisions, namespace, namespaceLabels, pod}))`: a JSON string
/// with `errors` (per input field) or `revisions` (one verdict per installed revision).
#[wasm_bindgen]
pub fn evaluate(input: &str) -> String {
    playground::evaluate_json(input)
}
