//! `evaluate_owned` (what the waPC glue calls: the pod moves into the output) must answer
//! exactly like `evaluate` (the pod is borrowed and copied), on first injection and on
//! re-injection of its own output.

use revision_injector::admission::{evaluate, evaluate_owned};
use revision_injector::settings::Settings;
use revision_injector::testgen::{case, CaseCluster, SplitMix};
use serde_json::json;

#[test]
fn owned_and_borrowed_evaluation_agree() {
    let settings = [
        Settings::default(),
        Settings::from_value(&json!({"nativeSidecars": false, "revision": "canary"})).unwrap(),
    ];
    let mut injected = 0;
    for seed in 0..1500u64 {
        let c = case(&mut SplitMix(seed));
        let cluster = CaseCluster(&c);
        for s in &settings {
            let borrowed = evaluate(&c.request, s, &cluster);
            let owned = evaluate_owned(c.request.clone(), s, &cluster);
            assert_eq!(borrowed, owned, "seed {seed}");
            let Some(pod) = borrowed.mutated_object else {
                continue;
            };
            injected += 1;
            let mut again = c.request.clone();
            again["object"] = pod;
            assert_eq!(
                evaluate(&again, s, &cluster),
                evaluate_owned(again.clone(), s, &cluster),
                "re-injection, seed {seed}"
            );
        }
    }
    assert!(
        injected > 200,
        "only {injected} injections: the generator changed"
    );
}
