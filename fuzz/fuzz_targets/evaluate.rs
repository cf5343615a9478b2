//! One input, two uses: the bytes steer the structured generator (a Pod request with random
//! labels, annotations, containers, probes, ports and volumes, checked against every
//! invariant of `testgen::check` across a canary setup), and the same bytes, if they parse as
//! JSON, go in raw as the AdmissionRequest and as its Pod (the answer must be well formed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use revision_injector::admission::evaluate;
use revision_injector::settings::Settings;
use revision_injector::testgen::{self, Answer, ByteEntropy, CaseCluster};

fuzz_target!(|data: &[u8]| {
    let case = testgen::case(&mut ByteEntropy::new(data));
    let lookup_skip = data.last().is_some_and(|b| b & 1 == 1);
    let mut native = testgen::native(&case);
    let result = testgen::check(&case, lookup_skip, &mut native);
    if let Err(e) = result {
        panic!("invariant broken: {e}\nrequest: {}", case.request);
    }
    let settings = Settings::default();
    for request in testgen::byte_requests(data) {
        let o = evaluate(&request, &settings, &CaseCluster(&case));
        let answer = Answer {
            accepted: o.accepted,
            message: o.message,
            code: o.code,
            mutated: o.mutated_object,
        };
        if let Err(e) = testgen::well_formed(&answer) {
            panic!("malformed answer: {e}\nrequest: {request}");
        }
    }
});
