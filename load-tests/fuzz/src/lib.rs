//! The fuzz targets' bodies: each takes the raw bytes of one input from
//! outside and must never panic. `fuzz_targets/*.rs` hand them to
//! libFuzzer; the workspace test `load-tests/tests/fuzz_regressions.rs`
//! includes this same file and replays every kept input
//! (`regressions/<target>/`) and the seed corpus on every CI run.

use dolbom_auth::{Revocations, SigningKey, Verifier};
use dolbom_calendar::Router;
use dolbom_domain::checks::check_incident_event;
use dolbom_domain::convert::{event_type_from_wire, kind_from_wire, stage_from_wire, ts};
use dolbom_domain::{DeviceId, DongCode, HouseholdConfig, HouseholdId, MunicipalityCode, Ts};
use dolbom_proto::v1 as pb;
use dolbom_shard::{ClockMode, Shard, ShardOptions};
use prost::Message;
use std::sync::OnceLock;

/// 2026-01-01T00:00:00Z.
pub const T0: Ts = Ts(1_767_225_600_000);
const DAY_MS: i64 = 86_400_000;

/// A target's body: one input's bytes.
pub type Target = fn(&[u8]);

/// The targets by name, as `cargo fuzz` and the regression test know them.
pub const TARGETS: [(&str, Target); 4] = [
    ("plug_reading", plug_reading),
    ("household_config", household_config),
    ("incident_event", incident_event),
    ("token", token),
];

fn wall_options() -> ShardOptions {
    ShardOptions {
        clock: ClockMode::Wall,
        ..ShardOptions::default()
    }
}

/// The holiday router, built once (the calendar of 2000–2050 takes a
/// while to compute; each input gets a clone).
fn router() -> Router {
    static R: OnceLock<Router> = OnceLock::new();
    R.get_or_init(Router::builtin).clone()
}

/// A wall-clock shard with households `hh-0` … `hh-3` (plugs `plug-0` …)
/// registered at [`T0`], so fuzzed input meets real state.
pub fn shard() -> Shard {
    let mut s = Shard::new(0, wall_options(), router(), T0);
    let muni = MunicipalityCode::new("11110").expect("valid");
    let dong = DongCode::new("1111051500", muni).expect("valid");
    let mut out = Vec::new();
    for i in 0..4 {
        let cfg = HouseholdConfig::with_defaults(
            HouseholdId::new(&format!("hh-{i}")).expect("valid"),
            dong,
            [DeviceId::new(&format!("plug-{i}")).expect("valid")],
            T0,
        );
        s.apply_config(cfg, T0, &mut out).expect("valid config");
    }
    s
}

/// The record key, picked by the input's first byte: none, a hosted
/// household, or the next bytes as they are; and the payload after it.
pub fn split_key(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return (None, data);
    };
    match sel % 3 {
        0 => (None, rest),
        1 => (Some(b"hh-1".as_slice()), rest),
        _ => {
            let Some((&n, rest)) = rest.split_first() else {
                return (Some(&[]), rest);
            };
            let n = (n as usize % 16).min(rest.len());
            (Some(&rest[..n]), &rest[n..])
        }
    }
}

/// `plug.readings` record bytes into a shard; the shard then advances a
/// day and snapshots.
pub fn plug_reading(data: &[u8]) {
    let (key, payload) = split_key(data);
    let mut s = shard();
    let mut out = Vec::new();
    let at = T0.plus_ms(60_000);
    let _ = s.on_reading_bytes(key, payload, Some(at), at, &mut out);
    let _ = s.on_reading_bytes(key, payload, None, T0.plus_ms(120_000), &mut out);
    s.set_caught_up(true);
    s.advance(T0.plus_ms(DAY_MS), &mut out);
    let _ = s.snapshot();
}

/// `care.households` record bytes (decode, validate, apply) into a shard;
/// it then advances three days, snapshots and restores.
pub fn household_config(data: &[u8]) {
    let (key, payload) = split_key(data);
    let mut s = shard();
    let mut out = Vec::new();
    let _ = s.on_config_bytes(key.unwrap_or_default(), Some(payload), T0, &mut out);
    s.set_caught_up(true);
    s.advance(T0.plus_ms(3 * DAY_MS), &mut out);
    let bytes = s.snapshot();
    Shard::restore(&bytes, wall_options(), router(), T0, Default::default())
        .expect("a shard's own snapshot restores");
}

/// `care.incidents` record bytes through the check every consumer makes
/// (notify's ingest, the history ingest) and the conversions after it.
pub fn incident_event(data: &[u8]) {
    let Ok(ev) = pb::IncidentEvent::decode(data) else {
        return;
    };
    if check_incident_event(&ev).is_ok() {
        let _ = kind_from_wire(ev.kind);
        let _ = event_type_from_wire(ev.r#type, ev.suppression_cause);
        let _ = stage_from_wire(ev.stage);
        for t in [&ev.due_at, &ev.emitted_at, &ev.episode_start]
            .into_iter()
            .flatten()
        {
            let _ = ts(t);
        }
    }
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let k = SigningKey::generate("k1").expect("a key");
        Verifier::new(&[k.verifying_key()])
    })
}

/// Bearer tokens and `authorization` values into the verifier (no key
/// signs here, so nothing may verify), revocation files into their parser.
pub fn token(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    assert!(
        verifier().verify(s).is_err(),
        "a token nobody signed verified"
    );
    assert!(verifier().verify_header(Some(s)).is_err());
    let _ = Revocations::parse(s, "fuzz");
}
