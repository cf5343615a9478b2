use super::*;

#[test]
fn parses_minor_and_patch_versions() {
    let v = IstioVersion::parse("1.23").unwrap();
    assert_eq!((v.minor, v.patch), (23, None));
    assert_eq!(v.to_string(), "1.23");
    let v = IstioVersion::parse("1.23.3").unwrap();
    assert_eq!((v.minor, v.patch), (23, Some(3)));
    assert_eq!(v.to_string(), "1.23.3");
    assert_eq!(IstioVersion::parse("1.24.0").unwrap().patch, Some(0));
    assert_eq!(IstioVersion::parse("1.22").unwrap().minor, 22);
    assert_eq!(IstioVersion::parse("1.32").unwrap().minor, 32);
}

#[test]
fn refuses_what_is_not_a_supported_version_and_names_the_range() {
    for bad in [
        "",
        "1",
        "1.",
        "1.23.",
        ".23",
        "2.23",
        "1.23.3.1",
        "1.023",
        "1.23.03",
        "v1.23",
        "1.23-asm",
        "1.23.3-asm.2",
        " 1.23",
        "1.+3",
        "1.99999",
    ] {
        let e = IstioVersion::parse(bad).unwrap_err();
        assert!(e.contains("not a version"), "{bad:?}: {e}");
        assert!(e.contains(SUPPORTED), "{bad:?}: {e}");
    }
    for out in ["1.21", "1.21.9", "1.33", "1.0", "1.100"] {
        let e = IstioVersion::parse(out).unwrap_err();
        assert!(e.contains("outside the supported range"), "{out:?}: {e}");
        assert!(e.contains("\"1.22\" to \"1.30\""), "{out:?}: {e}");
    }
    let e = IstioVersion::parse("1.31.0").unwrap_err();
    assert!(e.contains("release candidates"), "{e}");
}

#[test]
fn deserializes_from_a_string_and_refuses_numbers_with_a_hint() {
    let v: IstioVersion = serde_json::from_str("\"1.25.5\"").unwrap();
    assert_eq!(v.to_string(), "1.25.5");
    let e = serde_json::from_str::<IstioVersion>("1.3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("quote it"), "{e}");
    let e = serde_json::from_str::<IstioVersion>("\"1.40\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the supported range"), "{e}");
    assert_eq!(serde_json::to_string(&v).unwrap(), "\"1.25.5\"");
}

#[test]
fn release_tag_is_the_patch_named_or_the_reference_patch() {
    assert_eq!(
        IstioVersion::parse("1.23.1")
            .unwrap()
            .release_tag()
            .as_deref(),
        Some("1.23.1")
    );
    assert_eq!(
        IstioVersion::parse("1.23")
            .unwrap()
            .release_tag()
            .as_deref(),
        Some("1.23.3")
    );
    assert_eq!(
        IstioVersion::parse("1.28")
            .unwrap()
            .release_tag()
            .as_deref(),
        Some("1.28.10")
    );
    assert_eq!(IstioVersion::NEWEST.release_tag(), None);
    for minor in OLDEST_MINOR..=30 {
        let v = IstioVersion { minor, patch: None };
        assert!(
            v.release_tag().is_some(),
            "1.{minor} has a reference patch release"
        );
    }
}

#[test]
fn history_is_in_version_order_within_range_and_fits_the_bit_set() {
    assert!(HISTORY.len() <= 64);
    assert!(
        HISTORY.windows(2).all(|w| w[0].1 <= w[1].1),
        "rows sorted by version"
    );
    for (i, (change, since)) in HISTORY.iter().enumerate() {
        assert_eq!(
            *change as usize, i,
            "one row per change, in declaration order"
        );
        assert!(
            (OLDEST_MINOR + 1..=NEWEST_MINOR).contains(since),
            "{change:?}"
        );
        assert!(
            !UNRELEASED.iter().any(|(m, _)| m == since),
            "{change:?} in an unreleased version"
        );
    }
}

#[test]
fn a_version_has_exactly_the_changes_up_to_it() {
    let at = |minor| IstioVersion { minor, patch: None }.behaviour();
    // 1.22 is the baseline: nothing changed yet.
    assert!(HISTORY.iter().all(|(c, _)| !at(22).has(*c)));
    assert!(HISTORY.iter().all(|(c, _)| at(32).has(*c)));
    assert_eq!(Behaviour::default(), at(32));
    assert!(!at(23).has(Change::NativeSidecarAnnotation));
    assert!(at(24).has(Change::NativeSidecarAnnotation));
    assert!(!at(26).has(Change::NativeSidecarDefault));
    assert!(at(27).has(Change::NativeSidecarDefault));
    assert!(!at(28).has(Change::ResourceDivisor));
    assert!(at(29).has(Change::ResourceDivisor));
    assert!(!at(30).has(Change::NoGomaxprocs));
    for minor in OLDEST_MINOR..=NEWEST_MINOR {
        for (change, since) in HISTORY {
            assert_eq!(
                at(minor).has(*change),
                minor >= *since,
                "1.{minor} {change:?}"
            );
        }
    }
}
