-- dolbom history, embedded store (SQLite), schema version 1.
-- Applied once, in a transaction, when PRAGMA user_version < 1.
-- Mirrors migrations/scylla/0001_init.cql: same records, same natural keys.

CREATE TABLE readings_minute (
    household_id TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    watts_count INTEGER, watts_min REAL, watts_max REAL, watts_sum REAL,
    lux_count INTEGER, lux_min REAL, lux_max REAL, lux_sum REAL,
    PRIMARY KEY (household_id, bucket_start)
) WITHOUT ROWID;
CREATE INDEX readings_minute_by_time ON readings_minute (bucket_start);

CREATE TABLE readings_hour (
    household_id TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    watts_count INTEGER, watts_min REAL, watts_max REAL, watts_sum REAL,
    lux_count INTEGER, lux_min REAL, lux_max REAL, lux_sum REAL,
    PRIMARY KEY (household_id, bucket_start)
) WITHOUT ROWID;
CREATE INDEX readings_hour_by_time ON readings_hour (bucket_start);

CREATE TABLE incident_events (
    event_id TEXT NOT NULL PRIMARY KEY,
    incident_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    municipality_code TEXT NOT NULL,
    dong_code TEXT NOT NULL,
    kind INTEGER NOT NULL,
    type INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    payload BLOB NOT NULL -- dolbom.v1.IncidentEvent, protobuf
);
CREATE INDEX incident_events_by_municipality ON incident_events (municipality_code, at_ms, event_id);
CREATE INDEX incident_events_by_household ON incident_events (household_id, at_ms, event_id);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, at_ms, event_id);
CREATE INDEX incident_events_by_time ON incident_events (at_ms);

CREATE TABLE state_changes (
    household_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    cause TEXT NOT NULL,
    PRIMARY KEY (household_id, at_ms, state)
) WITHOUT ROWID;
CREATE INDEX state_changes_by_time ON state_changes (at_ms);

CREATE TABLE escalation_log (
    incident_id TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    municipality_code TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    step INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    tier TEXT NOT NULL,
    channel TEXT NOT NULL,
    message_id TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (incident_id, entry_id)
) WITHOUT ROWID;
CREATE INDEX escalation_log_by_time ON escalation_log (at_ms);

CREATE TABLE audit_log (
    audit_id TEXT NOT NULL PRIMARY KEY,
    municipality_code TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_by_municipality ON audit_log (municipality_code, at_ms, audit_id);
CREATE INDEX audit_log_by_time ON audit_log (at_ms);

CREATE TABLE snapshots (
    group_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    readings_offset INTEGER NOT NULL,
    households_offset INTEGER NOT NULL,
    incidents_offset INTEGER NOT NULL,
    taken_at_ms INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (group_id, partition)
);
