//! Households, their plugs, and what of the registry reached `care.households`.

use super::decode;
use crate::error::NotifyError;
use dolbom_proto::v1 as pb;
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Clone, Debug)]
pub struct HouseholdRow {
    pub config: pb::HouseholdConfig,
    pub contact: Option<Vec<u8>>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// (config, sealed contact, created_ms, updated_ms) as stored.
type RawHousehold = (Vec<u8>, Option<Vec<u8>>, i64, i64);

fn household_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawHousehold> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_household(t: RawHousehold) -> Result<HouseholdRow, NotifyError> {
    Ok(HouseholdRow {
        config: decode(&t.0, "household config")?,
        contact: t.1,
        created_ms: t.2,
        updated_ms: t.3,
    })
}

pub fn household(c: &Connection, id: &str) -> Result<Option<HouseholdRow>, NotifyError> {
    c.prepare_cached(
        "SELECT config, contact, created_ms, updated_ms FROM households WHERE household_id = ?1",
    )?
    .query_row([id], household_row)
    .optional()?
    .map(to_household)
    .transpose()
}

/// Inserts or replaces a household and its plugs.
pub fn put_household(c: &Connection, row: &HouseholdRow) -> Result<(), NotifyError> {
    let cfg = &row.config;
    c.prepare_cached(
        "INSERT INTO households (household_id, municipality, dong, version, config, contact, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (household_id) DO UPDATE SET municipality = ?2, dong = ?3, version = ?4,
           config = ?5, contact = ?6, updated_ms = ?8",
    )?
    .execute(params![
        cfg.household_id,
        cfg.municipality_code,
        cfg.dong_code,
        cfg.version as i64,
        cfg.encode_to_vec(),
        row.contact,
        row.created_ms,
        row.updated_ms
    ])?;
    c.prepare_cached("DELETE FROM plugs WHERE household_id = ?1")?
        .execute([&cfg.household_id])?;
    let mut ins = c.prepare_cached(
        "INSERT INTO plugs (municipality, device_id, household_id) VALUES (?1, ?2, ?3)",
    )?;
    for d in &cfg.device_ids {
        ins.execute([&cfg.municipality_code, d, &cfg.household_id])?;
    }
    // An unpublished tombstone of an earlier household with this id stays:
    // it goes out first (see `unpublished_households`).
    Ok(())
}

pub fn delete_household(c: &Connection, id: &str) -> Result<(), NotifyError> {
    c.prepare_cached(
        "INSERT INTO retired_households (household_id, version)
           SELECT household_id, version FROM households WHERE household_id = ?1
         ON CONFLICT (household_id) DO UPDATE SET version = max(version, excluded.version)",
    )?
    .execute([id])?;
    c.prepare_cached("DELETE FROM households WHERE household_id = ?1")?
        .execute([id])?;
    c.prepare_cached("DELETE FROM plugs WHERE household_id = ?1")?
        .execute([id])?;
    c.prepare_cached("INSERT OR IGNORE INTO tombstones (household_id) VALUES (?1)")?
        .execute([id])?;
    Ok(())
}

/// The last version a deleted household with this id had (0 if none).
pub fn retired_version(c: &Connection, id: &str) -> Result<u64, NotifyError> {
    let v: Option<i64> = c
        .prepare_cached("SELECT version FROM retired_households WHERE household_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

/// The household of `municipality` a plug is registered to.
pub fn device_owner(
    c: &Connection,
    municipality: &str,
    device: &str,
) -> Result<Option<String>, NotifyError> {
    Ok(c.prepare_cached(
        "SELECT household_id FROM plugs WHERE municipality = ?1 AND device_id = ?2",
    )?
    .query_row([municipality, device], |r| r.get(0))
    .optional()?)
}

/// One page of a municipality's households (optionally one dong), by id.
pub fn list_households(
    c: &Connection,
    municipality: &str,
    dong: Option<&str>,
    after: &str,
    limit: usize,
) -> Result<Vec<HouseholdRow>, NotifyError> {
    let mut st = c.prepare_cached(
        "SELECT config, contact, created_ms, updated_ms FROM households
         WHERE municipality = ?1 AND (?2 IS NULL OR dong = ?2) AND household_id > ?3
         ORDER BY household_id LIMIT ?4",
    )?;
    let rows = st.query_map(
        params![municipality, dong, after, limit as i64],
        household_row,
    )?;
    rows.map(|r| to_household(r?)).collect()
}

/// Registry changes not yet on `care.households`: (id, config or `None` for
/// a tombstone). Tombstones come first: a household deleted and created
/// again goes out as its tombstone, then its new config, in that order.
/// A registry change still to go out on `care.households`: a tombstone
/// (`config` = `None`) or a configuration, with the trace it was made in.
#[derive(Clone, Debug, PartialEq)]
pub struct Unpublished {
    pub household_id: String,
    pub config: Option<pb::HouseholdConfig>,
    pub traceparent: Option<String>,
}

pub fn unpublished_households(
    c: &Connection,
    limit: usize,
) -> Result<Vec<Unpublished>, NotifyError> {
    let mut out = Vec::new();
    let mut st = c.prepare_cached(
        "SELECT t.household_id, tr.traceparent FROM tombstones t
         LEFT JOIN household_traces tr USING (household_id) LIMIT ?1",
    )?;
    for r in st.query_map([limit as i64], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
        let (household_id, traceparent) = r?;
        out.push(Unpublished {
            household_id,
            config: None,
            traceparent,
        });
    }
    let mut st = c.prepare_cached(
        "SELECT h.household_id, h.config, tr.traceparent FROM households h
         LEFT JOIN household_traces tr USING (household_id)
         WHERE h.published_version < h.version LIMIT ?1",
    )?;
    for r in st.query_map([limit as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?))
    })? {
        let (household_id, b, traceparent) = r?;
        out.push(Unpublished {
            household_id,
            config: Some(decode(&b, "household config")?),
            traceparent,
        });
    }
    Ok(out)
}

/// Keeps the trace of a registry change until it is published (the latest
/// change's trace wins).
pub fn put_household_trace(c: &Connection, id: &str, traceparent: &str) -> Result<(), NotifyError> {
    c.prepare_cached(
        "INSERT INTO household_traces (household_id, traceparent) VALUES (?1, ?2)
         ON CONFLICT (household_id) DO UPDATE SET traceparent = ?2",
    )?
    .execute(params![id, traceparent])?;
    Ok(())
}

pub fn mark_household_published(
    c: &Connection,
    id: &str,
    version: Option<u64>,
) -> Result<(), NotifyError> {
    match version {
        Some(v) => c
            .prepare_cached(
                "UPDATE households SET published_version = max(published_version, ?2) WHERE household_id = ?1",
            )?
            .execute(params![id, v as i64])?,
        None => c
            .prepare_cached("DELETE FROM tombstones WHERE household_id = ?1")?
            .execute([id])?,
    };
    c.prepare_cached(
        "DELETE FROM household_traces WHERE household_id = ?1
           AND NOT EXISTS (SELECT 1 FROM tombstones WHERE household_id = ?1)
           AND NOT EXISTS (SELECT 1 FROM households
                           WHERE household_id = ?1 AND published_version < version)",
    )?
    .execute([id])?;
    Ok(())
}
