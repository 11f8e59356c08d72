//! Every input the fuzzers kept (`load-tests/fuzz/regressions/<target>/`,
//! each one that once crashed a target, kept after the fix) and a seed
//! corpus of well-formed records, through the fuzz targets' own bodies
//! (`load-tests/fuzz/src/lib.rs`, included here): none may panic. With
//! `DOLBOM_FUZZ_SEEDS=DIR` the seeds are also written to `DIR/<target>/`
//! for `load-tests/fuzz/run.sh` to start from.

#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use dolbom_auth::{Principal, SigningKey};
use dolbom_proto::v1 as pb;
use prost::Message;
use std::path::Path;

fn at(ms: i64) -> Option<dolbom_proto::prost_types::Timestamp> {
    Some(dolbom_proto::prost_types::Timestamp {
        seconds: ms / 1000,
        nanos: 0,
    })
}

/// Well-formed records per target (the key byte first where a target reads one).
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let t0 = fuzz::T0.millis();
    let keyed = |payload: Vec<u8>| [vec![1u8], payload].concat();
    match target {
        "plug_reading" => {
            let r = pb::PlugReading {
                device_id: "plug-1".into(),
                household_id: "hh-1".into(),
                observed_at_ms: t0 + 30_000,
                watts: Some(120.0),
                lux: Some(300.0),
                sequence: 7,
                current_amps: None,
            };
            vec![keyed(r.encode_to_vec()), r.encode_to_vec()]
        }
        "household_config" => {
            let c = pb::HouseholdConfig {
                household_id: "hh-1".into(),
                municipality_code: "11110".into(),
                dong_code: "1111051500".into(),
                device_ids: vec!["plug-1".into(), "plug-9".into()],
                registered_at: at(t0),
                version: 2,
                night_holiday_consent: true,
                ..Default::default()
            };
            vec![keyed(c.encode_to_vec())]
        }
        "incident_event" => {
            let e = pb::IncidentEvent {
                event_id: "INA:hh-1:1/INCIDENT_EVENT_TYPE_OPENED/STAGE_ATTENTION".into(),
                incident_id: "INA:hh-1:1".into(),
                household_id: "hh-1".into(),
                municipality_code: "11110".into(),
                dong_code: "1111051500".into(),
                kind: pb::IncidentKind::Inactivity as i32,
                r#type: pb::IncidentEventType::Opened as i32,
                stage: pb::Stage::Attention as i32,
                due_at: at(t0),
                emitted_at: at(t0),
                episode_start: at(t0 - 43_200_000),
                ..Default::default()
            };
            vec![e.encode_to_vec()]
        }
        "token" => {
            // Signed by a key the target's verifier does not know.
            let k = SigningKey::generate("k1").unwrap();
            let p = Principal::municipality("jongno", "11110", true);
            let t = k.mint(&p, dolbom_auth::unix_now(), 3600).unwrap();
            vec![
                t.clone().into_bytes(),
                format!("Bearer {t}").into_bytes(),
                b"jti abc\nsub x 100\n".to_vec(),
            ]
        }
        _ => Vec::new(),
    }
}

#[test]
fn kept_fuzz_inputs_and_seeds_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let write = std::env::var_os("DOLBOM_FUZZ_SEEDS");
    let mut kept = 0;
    for (name, target) in fuzz::TARGETS {
        for (i, seed) in seeds(name).iter().enumerate() {
            target(seed);
            if let Some(dir) = &write {
                let dir = Path::new(dir).join(name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
        let Ok(files) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for f in files {
            let path = f.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            eprintln!("{name}: {}", path.display());
            target(&bytes);
            kept += 1;
        }
    }
    eprintln!("{kept} kept inputs replayed");
}
