//! The Istio versions this policy reproduces, and every injector behaviour that changed
//! between them, as data: one row per behaviour, naming the minor version that introduced it.
//!
//! Read [`HISTORY`] top to bottom the way one reads Istio's own
//! `profile-compatibility-version-*.yaml`: what a revision of version X does is every row up to
//! X. The renderer asks [`Behaviour::has`] about a named behaviour, never about a version
//! number. The evidence for each row (template and Go source lines at the version that changed
//! it) is in `docs/istio-versions.md`, whose row numbers (R01 …) the comments repeat.

use std::fmt;

/// The oldest and newest minor versions with a reference injector.
pub const OLDEST_MINOR: u8 = 22;
/// Istio's main branch (1.32-dev), the version the policy followed before `istioVersion`.
pub const NEWEST_MINOR: u8 = 32;
/// Minor versions in the range that have no release to reproduce.
const UNRELEASED: &[(u8, &str)] = &[(
    31,
    "Istio 1.31 exists only as release candidates, so there is no released injector to reproduce; use \"1.30\" or \"1.32\"",
)];
/// The patch release each minor version's reference material (and conformance suite) comes
/// from: the default proxy image tag of a revision that names only the minor version.
const REFERENCE_PATCH: &[(u8, u16)] = &[
    (22, 8),
    (23, 3),
    (24, 0),
    (25, 5),
    (26, 8),
    (27, 9),
    (28, 10),
    (29, 6),
    (30, 3),
];

/// The text every refusal ends with.
pub const SUPPORTED: &str = "supported: \"1.22\" to \"1.30\" and \"1.32\" (Istio's main branch), optionally with a patch release such as \"1.23.3\"";

/// An Istio version: `1.<minor>` with an optional patch release. Only the minor version
/// changes what is injected; the patch release is kept for display and for the default image
/// tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IstioVersion {
    pub minor: u8,
    pub patch: Option<u16>,
}

impl IstioVersion {
    /// The newest supported version: what a revision without `istioVersion` reproduces.
    pub const NEWEST: IstioVersion = IstioVersion {
        minor: NEWEST_MINOR,
        patch: None,
    };

    /// `"1.23"` or `"1.23.3"`, within the supported range.
    pub fn parse(text: &str) -> Result<IstioVersion, String> {
        let refuse = |why: &str| format!("istioVersion {text:?}: {why}; {SUPPORTED}");
        // Decimal without leading zeros, as Istio's release tags write them.
        let number = |s: &str| -> Option<u16> {
            let digits = !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
            (digits && (s == "0" || !s.starts_with('0'))).then(|| s.parse().ok())?
        };
        let parts: Vec<&str> = text.split('.').collect();
        let (minor, patch) = match parts.as_slice() {
            ["1", minor] => (number(minor), None),
            ["1", minor, patch] => (
                number(minor),
                Some(number(patch).ok_or_else(|| refuse("not a version"))?),
            ),
            _ => (None, None),
        };
        let minor = minor.ok_or_else(|| refuse("not a version"))?;
        if let Some((_, why)) = UNRELEASED.iter().find(|(m, _)| u16::from(*m) == minor) {
            return Err(format!("istioVersion {text:?}: {why}; {SUPPORTED}"));
        }
        if !(u16::from(OLDEST_MINOR)..=u16::from(NEWEST_MINOR)).contains(&minor) {
            return Err(refuse("outside the supported range"));
        }
        Ok(IstioVersion {
            minor: minor as u8,
            patch,
        })
    }

    /// The proxy image tag Istio's chart of this version installs by default (`global.tag`):
    /// the patch release named, else the reference patch release. `None` for the main branch,
    /// which has no release.
    pub fn release_tag(&self) -> Option<String> {
        let patch = self.patch.or_else(|| {
            REFERENCE_PATCH
                .iter()
                .find(|(m, _)| *m == self.minor)
                .map(|(_, p)| *p)
        })?;
        Some(format!("1.{}.{patch}", self.minor))
    }

    /// What this version's injector does.
    pub fn behaviour(&self) -> Behaviour {
        Behaviour::of(self.minor)
    }
}

impl Default for IstioVersion {
    fn default() -> Self {
        IstioVersion::NEWEST
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(p) => write!(f, "1.{}.{p}", self.minor),
            None => write!(f, "1.{}", self.minor),
        }
    }
}

impl serde::Serialize for IstioVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IstioVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IstioVersion;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an Istio version as a string, such as \"1.23\" or \"1.23.3\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IstioVersion, E> {
                IstioVersion::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<IstioVersion, E> {
                Err(E::custom(format!(
                    "istioVersion {v}: a number, not a version string; quote it (YAML reads 1.30 as the number 1.3); {SUPPORTED}"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IstioVersion, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IstioVersion, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(Visitor)
    }
}

macro_rules! history {
    ($($(#[$doc:meta])* $change:ident = $minor:literal;)+) => {
        /// A behaviour of Istio's injector that some version introduced (or, for a removal,
        /// the state after it). Named after what the injector does from that version on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Change { $($(#[$doc])* $change),+ }

        /// Every [`Change`] with the minor version that introduced it, oldest first.
        pub const HISTORY: &[(Change, u8)] = &[$((Change::$change, $minor)),+];
    };
}

history! {
    /// R01: the proxy gets `--outlierLogPath=<global.proxy.outlierLogPath>` when it is set.
    OutlierLogPath = 23;
    /// R02: the pod annotation `sidecar.istio.io/nativeSidecar` is read (`"true"` turns
    /// native sidecars on; before, only the istiod flag decided).
    NativeSidecarAnnotation = 24;
    /// R03/R04: CNI mode is `pilot.cni.enabled` alone, and the multus annotation follows
    /// `pilot.cni.provider` alone; before, the `istio_cni.{enabled,provider,chained}` values
    /// counted too.
    CniFromPilotOnly = 24;
    /// R05: no core-dump support (`global.proxy.enableCoreDump` and the
    /// `sidecar.istio.io/enableCoreDump` annotation no longer add the `enable-core-dump` init
    /// container, and the proxy's root filesystem is always read-only).
    NoCoreDump = 24;
    /// R06: no `kube-ca-cert` volume and mount for `pilotCertProvider: kubernetes`.
    NoKubeCaCert = 24;
    /// R07: `global.proxy_init.forceApplyIptables` adds `--force-apply` to istio-init.
    ForceApplyIptables = 24;
    /// R09: the `sidecar.istio.io/enableCoreDump` annotation is no longer validated as a bool.
    CoreDumpAnnotationUnchecked = 25;
    /// R10: app `preStop`/`postStart` httpGet/tcpSocket hooks are rewritten to the agent
    /// (`/app-lifecycle/<container>/{prestopz,poststartz}`) like probes.
    LifecycleHookRewrite = 25;
    /// R11: `ISTIO_META_WORKLOAD_NAME` prefers the pod label `service.istio.io/workload-name`.
    WorkloadNameLabel = 25;
    /// R12: with CNI, `traffic.sidecar.istio.io/includeInboundPorts` is written even when empty.
    CniIncludeInboundPortsAlways = 25;
    /// R13: the `istio.io/reroute-virtual-interfaces` annotation is honoured.
    RerouteVirtualInterfaces = 25;
    /// R14: the multus network entry is `{"name":"istio-cni","namespace":"default"}` (before:
    /// `{"name":"default/istio-cni"}`).
    MultusNamespacedEntry = 25;
    /// R16: interception mode `NONE` with a classic sidecar keeps the pod's own init
    /// containers (before, the template's `initContainers: null` deleted them).
    NoneInterceptionKeepsInitContainers = 26;
    /// R17: `istio.io/reroute-virtual-interfaces` replaces the kubevirt `-k` argument
    /// instead of adding a second one.
    RerouteReplacesKubevirt = 26;
    /// R18: `pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API` mounts the CA bundle from a
    /// ClusterTrustBundle.
    ClusterTrustBundle = 26;
    /// R19: native sidecars are on by default (istiod's `auto` on Kubernetes >= 1.33), and any
    /// `sidecar.istio.io/nativeSidecar` value but `"false"` means native.
    NativeSidecarDefault = 27;
    /// R20: `sidecar.istio.io/inject` counts only as exactly `true` or `false`; before,
    /// `y`/`yes`/`true`/`on` (any case) injected and any other non-empty value skipped.
    InjectExactBool = 27;
    /// R21: `sidecar.istio.io/proxy{CPU,Memory}[Limit]` must be Kubernetes quantities.
    ProxyResourceAnnotationsChecked = 27;
    /// R22: the `istio-ca-crl` volume, and its mount for the istiod certificate provider.
    CrlVolume = 27;
    /// R23: the CA root ConfigMap is `global.trustBundleName` when set.
    TrustBundleName = 27;
    /// R24: `global.nativeNftables` adds `--native-nftables` to istio-init/istio-validation.
    NativeNftables = 27;
    /// R25: re-injection adds `ISTIO_KUBE_APP_PROBERS` when the old proxy had none.
    ProbersOnReinjection = 27;
    /// R26: `global.proxy.seccompProfile` is set on the init container and the proxy.
    SeccompProfile = 28;
    /// R27: `divisor: "1"` on the `ISTIO_CPU_LIMIT`, `GOMEMLIMIT` and `GOMAXPROCS` env vars.
    ResourceDivisor = 29;
    /// R28: the CRL ConfigMap is `pilot.crlConfigMapName` when set.
    CrlConfigMapName = 29;
    /// R29: `traffic.sidecar.istio.io/excludeInterfaces`, `kubevirtInterfaces` and
    /// `istio.io/reroute-virtual-interfaces` must be lists of interface names.
    InterfaceNamesChecked = 30;
    /// R30: `OTEL_RESOURCE_ATTRIBUTES` for OpenTelemetry providers with semantic conventions.
    OtelResourceAttributes = 30;
    /// R32: canonical names are trimmed of trailing `-`, `_` and `.` (before: `-` only).
    CanonicalNameTrimAll = 32;
    /// R33: istio-init's image follows `global.proxy_init.image` (before: the proxy image).
    ProxyInitImage = 32;
    /// R34: an empty `proxy.istio.io/config` `image.imageType` falls back to `global.variant`.
    ImageTypeFallback = 32;
    /// R35: no `GOMAXPROCS` env var.
    NoGomaxprocs = 32;
    /// R36: `GODEBUG=fips140=only` under the `fips-140-3` compliance policy.
    FipsGodebug = 32;
    /// R37: annotation-derived strings in the template are Go-quoted.
    QuotedTemplateStrings = 32;
    /// R38: Prometheus ports from annotations must be valid, non-reserved ports.
    PrometheusPortChecked = 32;
    /// R39: `prometheus.istio.io/scrape-targets` feeds `ISTIO_PROMETHEUS_ANNOTATIONS`.
    PrometheusScrapeTargets = 32;
    /// R40: `prometheus.istio.io/secure-port` from the proxy's
    /// `ENVOY_SECURE_MERGED_METRICS_PORT`.
    PrometheusSecurePort = 32;
}

/// What one version's injector does: the set of [`Change`]s up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour(u64);

impl Behaviour {
    fn of(minor: u8) -> Behaviour {
        let bits = HISTORY
            .iter()
            .filter(|(_, since)| *since <= minor)
            .fold(0u64, |bits, (change, _)| bits | 1 << *change as u8);
        Behaviour(bits)
    }

    /// Does this version behave as `change` describes?
    pub fn has(self, change: Change) -> bool {
        self.0 & (1 << change as u8) != 0
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        IstioVersion::NEWEST.behaviour()
    }
}

#[cfg(test)]
mod tests;
