//! The conformance suite every [`HistoryStore`] must pass, so ScyllaDB and the
//! embedded store keep identical semantics.
//!
//! Each check writes under ids unique to the run (a store shared between runs,
//! like a ScyllaDB test cluster, never sees collisions) and panics with a
//! message naming the check when the store disagrees. Times are relative to
//! now, inside the retention the store was opened with ([`Retention`]'s
//! defaults are assumed unless given).

use crate::model::*;
use crate::stats::{month_statistics, Month};
use crate::store::HistoryStore;
use dolbom_proto::v1::{IncidentEvent, IncidentEventType, IncidentKind, Outcome, Stage};
use dolbom_snapshots::ShardSnapshot;
use prost_types::Timestamp;

/// Runs every check against `store`, which was opened with `retention`.
pub async fn run_all(store: &dyn HistoryStore, retention: Retention) {
    let run = format!(
        "{:x}",
        dolbom_domain::Ts::now().millis() ^ (std::process::id() as i64) << 20
    );
    aggregates(store, &run).await;
    incidents_paging_and_filters(store, &run).await;
    timeline_and_incident_events(store, &run).await;
    statistics(store, &run).await;
    snapshots(store, &run).await;
    escalation_and_audit(store, &run).await;
    retention_by_record_time(store, &run, retention).await;
}

fn ts(ms: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// An incident event as the monitor or notify would publish it.
pub fn event(
    municipality: &str,
    dong: &str,
    household: &str,
    incident: &str,
    ty: IncidentEventType,
    stage: Stage,
    at_ms: i64,
) -> IncidentEvent {
    IncidentEvent {
        event_id: format!("{incident}/{}/{}", ty as i32, stage as i32),
        incident_id: incident.to_string(),
        household_id: household.to_string(),
        municipality_code: municipality.to_string(),
        dong_code: dong.to_string(),
        kind: IncidentKind::Inactivity as i32,
        r#type: ty as i32,
        stage: stage as i32,
        due_at: ts(at_ms),
        emitted_at: ts(at_ms + 150),
        ..Default::default()
    }
}

fn minute(household: &str, at: i64, i: u32) -> Aggregate {
    Aggregate {
        household_id: household.to_string(),
        resolution: Resolution::Minute,
        bucket_start_ms: Resolution::Minute.bucket_start(at),
        readings: 1 + i % 3,
        watts: Some(Summary {
            count: 1 + i % 3,
            min: f64::from(i),
            max: f64::from(i) + 10.0,
            sum: f64::from(i) * 2.5,
        }),
        lux: i.is_multiple_of(2).then(|| Summary::of(f64::from(i) / 2.0)),
    }
}

async fn write(store: &dyn HistoryStore, batch: WriteBatch, what: &str) {
    store
        .write(&batch)
        .await
        .unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
}

/// Minute aggregates round-trip; hours roll up from the stored minutes;
/// writing again changes nothing; ranges are `[from, to)`.
pub async fn aggregates(store: &dyn HistoryStore, run: &str) {
    let h = format!("hh-agg-{run}");
    let hour0 = Resolution::Hour.bucket_start(dolbom_domain::Ts::now().millis() - 2 * DAY_MS);
    let minutes: Vec<Aggregate> = (0..120)
        .map(|i| minute(&h, hour0 + i64::from(i) * MINUTE_MS, i))
        .collect();
    let batch = WriteBatch {
        aggregates: minutes.clone(),
        roll_up_hours: vec![
            HourKey {
                household_id: h.clone(),
                hour_start_ms: hour0,
            },
            HourKey {
                household_id: h.clone(),
                hour_start_ms: hour0 + HOUR_MS,
            },
        ],
        ..Default::default()
    };
    write(store, batch.clone(), "aggregates").await;
    write(store, batch, "aggregates (again)").await;
    let t = store
        .timeline(&h, hour0, hour0 + 2 * HOUR_MS, Resolution::Minute)
        .await
        .expect("aggregates: timeline");
    assert_eq!(
        t.aggregates, minutes,
        "aggregates: minutes round-trip, once each, in order"
    );
    let t = store
        .timeline(
            &h,
            hour0 + 10 * MINUTE_MS,
            hour0 + 20 * MINUTE_MS,
            Resolution::Minute,
        )
        .await
        .expect("aggregates: timeline range");
    assert_eq!(
        t.aggregates,
        minutes[10..20].to_vec(),
        "aggregates: range is [from, to)"
    );
    let hours = store
        .timeline(&h, hour0, hour0 + 2 * HOUR_MS, Resolution::Hour)
        .await
        .expect("aggregates: hour timeline")
        .aggregates;
    let expected: Vec<Aggregate> = [0usize, 1]
        .iter()
        .map(|&k| {
            Aggregate::roll_up(
                &h,
                hour0 + k as i64 * HOUR_MS,
                &minutes[k * 60..(k + 1) * 60],
            )
            .expect("minutes")
        })
        .collect();
    assert_eq!(hours.len(), 2, "aggregates: two hours rolled up");
    for (got, want) in hours.iter().zip(&expected) {
        assert_eq!(got.readings, want.readings, "aggregates: hour readings");
        assert_eq!(
            got.watts.map(|w| (w.count, w.min, w.max)),
            want.watts.map(|w| (w.count, w.min, w.max)),
            "aggregates: hour watts"
        );
        assert!(
            (got.watts.unwrap().sum - want.watts.unwrap().sum).abs() < 1e-9,
            "aggregates: hour watt sum"
        );
        assert_eq!(
            got.lux.map(|l| l.count),
            want.lux.map(|l| l.count),
            "aggregates: hour lux"
        );
    }
    assert!(
        store
            .timeline(&h, hour0, hour0, Resolution::Minute)
            .await
            .is_err(),
        "aggregates: an empty range is an error"
    );
    assert!(
        store
            .timeline(&h, hour0, hour0 + MAX_QUERY_RANGE_MS + 1, Resolution::Hour)
            .await
            .is_err(),
        "aggregates: a range over 400 days is an error"
    );
    let other = store
        .timeline(
            &format!("{h}-other"),
            hour0,
            hour0 + 2 * HOUR_MS,
            Resolution::Minute,
        )
        .await
        .expect("aggregates: other household");
    assert!(
        other.aggregates.is_empty(),
        "aggregates: other households see nothing"
    );
}

/// Listing pages through every matching event exactly once, in order, and
/// filters by dong, household and kind; another municipality sees nothing.
pub async fn incidents_paging_and_filters(store: &dyn HistoryStore, run: &str) {
    let (ma, mb) = (format!("A{run}"), format!("B{run}"));
    let base = dolbom_domain::Ts::now().millis() - 5 * DAY_MS;
    let mut all = Vec::new();
    for i in 0..37i64 {
        let dong = if i % 3 == 0 { "d1" } else { "d2" };
        let hh = format!("hh-{run}-{}", i % 5);
        let mut e = event(
            &ma,
            dong,
            &hh,
            &format!("inc-{run}-{i}"),
            IncidentEventType::Opened,
            Stage::Attention,
            // Spread over three days; some share a millisecond.
            base + (i / 2) * 3 * HOUR_MS,
        );
        if i % 4 == 0 {
            e.kind = IncidentKind::DeviceOffline as i32;
        }
        all.push(e);
    }
    let foreign = event(
        &mb,
        "d1",
        "hh-b",
        &format!("inc-{run}-b"),
        IncidentEventType::Opened,
        Stage::Attention,
        base + HOUR_MS,
    );
    let mut batch = WriteBatch {
        incident_events: all.clone(),
        ..Default::default()
    };
    batch.incident_events.push(foreign.clone());
    write(store, batch.clone(), "incidents").await;
    write(store, batch, "incidents (again)").await;
    all.sort_by(|a, b| (event_time_ms(a), &a.event_id).cmp(&(event_time_ms(b), &b.event_id)));

    let list = |q: IncidentQuery| async move {
        let mut q = q;
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.incidents(&q).await.expect("incidents: list");
            pages += 1;
            assert!(
                page.events.len() <= q.effective_limit(),
                "incidents: page size"
            );
            out.extend(page.events);
            match page.next_page_token {
                Some(t) => q.page_token = Some(t),
                None => break,
            }
            assert!(pages < 100, "incidents: paging does not end");
        }
        out
    };
    let q = IncidentQuery {
        municipality_code: ma.clone(),
        from_ms: base,
        to_ms: base + 10 * DAY_MS,
        limit: 7,
        ..Default::default()
    };
    assert_eq!(
        list(q.clone()).await,
        all,
        "incidents: all pages, each event once, in order"
    );
    let by_dong: Vec<_> = all
        .iter()
        .filter(|e| e.dong_code == "d1")
        .cloned()
        .collect();
    assert_eq!(
        list(IncidentQuery {
            dong_code: Some("d1".into()),
            ..q.clone()
        })
        .await,
        by_dong,
        "incidents: dong filter"
    );
    let hh = format!("hh-{run}-3");
    let by_household: Vec<_> = all
        .iter()
        .filter(|e| e.household_id == hh)
        .cloned()
        .collect();
    assert_eq!(
        list(IncidentQuery {
            household_id: Some(hh.clone()),
            ..q.clone()
        })
        .await,
        by_household,
        "incidents: household filter"
    );
    let offline: Vec<_> = all
        .iter()
        .filter(|e| e.kind == IncidentKind::DeviceOffline as i32)
        .cloned()
        .collect();
    assert_eq!(
        list(IncidentQuery {
            kind: Some(IncidentKind::DeviceOffline as i32),
            ..q.clone()
        })
        .await,
        offline,
        "incidents: kind filter"
    );
    let cut = event_time_ms(&all[10]);
    let before_cut: Vec<_> = all
        .iter()
        .filter(|e| event_time_ms(e) < cut)
        .cloned()
        .collect();
    assert_eq!(
        list(IncidentQuery {
            to_ms: cut,
            ..q.clone()
        })
        .await,
        before_cut,
        "incidents: `to` is exclusive"
    );
    let from_cut: Vec<_> = all
        .iter()
        .filter(|e| event_time_ms(e) >= cut)
        .cloned()
        .collect();
    assert_eq!(
        list(IncidentQuery {
            from_ms: cut,
            ..q.clone()
        })
        .await,
        from_cut,
        "incidents: `from` is inclusive"
    );
    assert_eq!(
        list(IncidentQuery {
            municipality_code: mb.clone(),
            ..q.clone()
        })
        .await,
        vec![foreign],
        "incidents: municipalities are separate"
    );
    assert!(
        store
            .incidents(&IncidentQuery {
                page_token: Some("garbage".into()),
                ..q.clone()
            })
            .await
            .is_err(),
        "incidents: a malformed page token is an error"
    );
    assert!(
        store
            .incidents(&IncidentQuery {
                to_ms: q.from_ms,
                ..q
            })
            .await
            .is_err(),
        "incidents: an empty range is an error"
    );
}

/// A household's timeline holds its state changes and incident events;
/// an incident's events come back by its id.
pub async fn timeline_and_incident_events(store: &dyn HistoryStore, run: &str) {
    let m = format!("T{run}");
    let h = format!("hh-tl-{run}");
    let inc = format!("inc-tl-{run}");
    let t0 = dolbom_domain::Ts::now().millis() - 3 * DAY_MS;
    let events = vec![
        event(
            &m,
            "d",
            &h,
            &inc,
            IncidentEventType::Opened,
            Stage::Attention,
            t0,
        ),
        event(
            &m,
            "d",
            &h,
            &inc,
            IncidentEventType::StageRaised,
            Stage::Caution,
            t0 + 12 * HOUR_MS,
        ),
        event(
            &m,
            "d",
            &h,
            &inc,
            IncidentEventType::Recovered,
            Stage::Caution,
            t0 + 13 * HOUR_MS,
        ),
    ];
    let changes: Vec<StateChange> = events
        .iter()
        .filter_map(StateChange::from_incident_event)
        .collect();
    assert_eq!(
        changes.iter().map(|c| c.state).collect::<Vec<_>>(),
        vec![StateKind::Attention, StateKind::Caution, StateKind::Normal]
    );
    write(
        store,
        WriteBatch {
            incident_events: events.clone(),
            state_changes: changes.clone(),
            aggregates: vec![minute(&h, t0 + MINUTE_MS, 1)],
            ..Default::default()
        },
        "timeline",
    )
    .await;
    let t = store
        .timeline(&h, t0, t0 + DAY_MS, Resolution::Minute)
        .await
        .expect("timeline");
    assert_eq!(t.incident_events, events, "timeline: incident events");
    assert_eq!(t.state_changes, changes, "timeline: state changes");
    assert_eq!(t.aggregates.len(), 1, "timeline: aggregates");
    let t = store
        .timeline(&h, t0 + 12 * HOUR_MS, t0 + DAY_MS, Resolution::Minute)
        .await
        .expect("timeline: later range");
    assert_eq!(t.incident_events, events[1..].to_vec(), "timeline: range");
    assert_eq!(t.state_changes, changes[1..].to_vec(), "timeline: range");
    assert_eq!(
        store.incident_events(&inc).await.expect("incident events"),
        events,
        "incident events by id"
    );
    assert!(store
        .incident_events(&format!("{inc}-none"))
        .await
        .expect("incident events")
        .is_empty());
}

/// Monthly statistics equal the pure computation over the same events.
pub async fn statistics(store: &dyn HistoryStore, run: &str) {
    let m = format!("S{run}");
    let month = Month::of_ms(dolbom_domain::Ts::now().millis() - 40 * DAY_MS);
    let t = month.start_ms() + 2 * HOUR_MS;
    let mut events = Vec::new();
    for i in 0..20i64 {
        let inc = format!("inc-st-{run}-{i}");
        let h = format!("hh-st-{run}-{i}");
        let dong = if i < 12 { "d1" } else { "d2" };
        let at = t + i * HOUR_MS;
        events.push(event(
            &m,
            dong,
            &h,
            &inc,
            IncidentEventType::Opened,
            Stage::Attention,
            at,
        ));
        if i % 2 == 0 {
            events.push(event(
                &m,
                dong,
                &h,
                &inc,
                IncidentEventType::StageRaised,
                Stage::Caution,
                at + HOUR_MS,
            ));
        }
        if i % 3 == 0 {
            events.push(event(
                &m,
                dong,
                &h,
                &inc,
                IncidentEventType::Acknowledged,
                Stage::Unspecified,
                at + (i + 1) * MINUTE_MS,
            ));
            let mut r = event(
                &m,
                dong,
                &h,
                &inc,
                IncidentEventType::Resolved,
                Stage::Unspecified,
                at + (i + 2) * 10 * MINUTE_MS,
            );
            r.outcome = if i % 2 == 0 {
                Outcome::VisitedSafe as i32
            } else {
                Outcome::ReachedByPhone as i32
            };
            events.push(r);
        } else if i % 3 == 1 {
            events.push(event(
                &m,
                dong,
                &h,
                &inc,
                IncidentEventType::Recovered,
                Stage::Attention,
                at + 3 * HOUR_MS,
            ));
        }
    }
    // One incident opened in the month before, resolved in this one: not counted.
    let prev = month.start_ms() - HOUR_MS;
    events.push(event(
        &m,
        "d1",
        "hh-prev",
        &format!("inc-st-{run}-prev"),
        IncidentEventType::Opened,
        Stage::Attention,
        prev,
    ));
    events.push(event(
        &m,
        "d1",
        "hh-prev",
        &format!("inc-st-{run}-prev"),
        IncidentEventType::Recovered,
        Stage::Attention,
        t,
    ));
    write(
        store,
        WriteBatch {
            incident_events: events.clone(),
            ..Default::default()
        },
        "statistics",
    )
    .await;
    let s = store.statistics(&m, None, month).await.expect("statistics");
    assert_eq!(
        s,
        month_statistics(&m, "", month, &events),
        "statistics: whole municipality"
    );
    assert_eq!(s.incidents, 20, "statistics: incidents opened in the month");
    let d1: Vec<_> = events
        .iter()
        .filter(|e| e.dong_code == "d1")
        .cloned()
        .collect();
    let s1 = store
        .statistics(&m, Some("d1"), month)
        .await
        .expect("statistics: dong");
    assert_eq!(
        s1,
        month_statistics(&m, "d1", month, &d1),
        "statistics: one dong"
    );
    assert_eq!(s1.incidents, 12);
    let next = store
        .statistics(&m, None, month.next())
        .await
        .expect("statistics: next month");
    assert_eq!(
        next.incidents, 0,
        "statistics: nothing opened the month after"
    );
}

/// Snapshots: latest wins, per group and partition; large states survive.
pub async fn snapshots(store: &dyn HistoryStore, run: &str) {
    let group = format!("g-{run}");
    let snap = |p: i32, n: usize, seed: u8| ShardSnapshot {
        group: group.clone(),
        partition: p,
        readings_offset: 100 + n as i64,
        households_offset: 7,
        incidents_offset: 42,
        taken_at_ms: dolbom_domain::Ts::now().millis(),
        state: (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect(),
    };
    assert_eq!(
        store.get_snapshot(&group, 0).await.expect("snapshot get"),
        None
    );
    let a = snap(0, 1000, 1);
    store.put_snapshot(&a).await.expect("snapshot put");
    assert_eq!(store.get_snapshot(&group, 0).await.expect("get"), Some(a));
    // Larger than one ScyllaDB chunk, and then smaller again.
    let big = snap(0, 3 * 1024 * 1024 + 17, 2);
    store.put_snapshot(&big).await.expect("snapshot put big");
    assert_eq!(
        store.get_snapshot(&group, 0).await.expect("get big"),
        Some(big)
    );
    let small = snap(0, 10, 3);
    store
        .put_snapshot(&small)
        .await
        .expect("snapshot put small");
    assert_eq!(
        store.get_snapshot(&group, 0).await.expect("get small"),
        Some(small.clone())
    );
    let other = snap(1, 0, 0);
    store
        .put_snapshot(&other)
        .await
        .expect("snapshot put empty");
    assert_eq!(
        store.get_snapshot(&group, 1).await.expect("get"),
        Some(other)
    );
    assert_eq!(
        store.get_snapshot(&group, 0).await.expect("get"),
        Some(small)
    );
    assert_eq!(
        store
            .get_snapshot(&format!("{group}-x"), 0)
            .await
            .expect("get"),
        None
    );
}

/// Escalation entries and audit entries round-trip in time order, once each.
pub async fn escalation_and_audit(store: &dyn HistoryStore, run: &str) {
    let m = format!("E{run}");
    let inc = format!("inc-esc-{run}");
    let t0 = dolbom_domain::Ts::now().millis() - DAY_MS;
    let entries: Vec<EscalationEntry> = (0..6u32)
        .map(|i| EscalationEntry {
            incident_id: inc.clone(),
            entry_id: format!("s{}/a{}", i / 2, i % 2),
            municipality_code: m.clone(),
            at_ms: t0 + i64::from(i) * MINUTE_MS,
            action: if i % 2 == 0 {
                EscalationAction::StepStarted
            } else {
                EscalationAction::DeliveryAttempt
            },
            policy_version: 3,
            step: i / 2,
            attempt: i % 2,
            tier: "DONG_OFFICE".into(),
            channel: "sms".into(),
            message_id: format!("{inc}/s{}", i / 2),
            result: if i == 1 {
                "failed".into()
            } else {
                "sent".into()
            },
            detail: String::new(),
        })
        .collect();
    let audit: Vec<AuditEntry> = (0..5)
        .map(|i| AuditEntry {
            audit_id: format!("au-{run}-{i}"),
            municipality_code: m.clone(),
            at_ms: t0 + i * 1000,
            principal: "officer-7@11110".into(),
            action: "registry.GetHousehold".into(),
            subject: format!("hh-{i}"),
            detail: "contact read".into(),
        })
        .collect();
    let batch = WriteBatch {
        escalation: entries.clone(),
        audit: audit.clone(),
        ..Default::default()
    };
    write(store, batch.clone(), "escalation").await;
    write(store, batch, "escalation (again)").await;
    assert_eq!(
        store.escalation(&inc).await.expect("escalation"),
        entries,
        "escalation"
    );
    assert_eq!(
        store.audit(&m, t0, t0 + 3000).await.expect("audit"),
        audit[..3].to_vec(),
        "audit: range [from, to)"
    );
    assert!(store
        .audit(&format!("{m}x"), t0, t0 + 10_000)
        .await
        .expect("audit")
        .is_empty());
}

/// Records older than their kind's retention are gone (by their own time)
/// once retention is enforced; younger ones stay.
pub async fn retention_by_record_time(store: &dyn HistoryStore, run: &str, retention: Retention) {
    let now = dolbom_domain::Ts::now().millis();
    let h = format!("hh-ret-{run}");
    let m = format!("R{run}");
    let old_minute = now - Retention::days_ms(retention.minute_days) - HOUR_MS;
    let young_minute = now - Retention::days_ms(retention.minute_days) + DAY_MS / 2;
    let old_audit = now - Retention::days_ms(retention.audit_days) - DAY_MS;
    write(
        store,
        WriteBatch {
            aggregates: vec![minute(&h, old_minute, 1), minute(&h, young_minute, 2)],
            audit: vec![
                AuditEntry {
                    audit_id: format!("ret-old-{run}"),
                    municipality_code: m.clone(),
                    at_ms: old_audit,
                    principal: "p".into(),
                    action: "a".into(),
                    subject: "s".into(),
                    detail: String::new(),
                },
                AuditEntry {
                    audit_id: format!("ret-new-{run}"),
                    municipality_code: m.clone(),
                    at_ms: now - DAY_MS,
                    principal: "p".into(),
                    action: "a".into(),
                    subject: "s".into(),
                    detail: String::new(),
                },
            ],
            ..Default::default()
        },
        "retention",
    )
    .await;
    store.enforce_retention(now).await.expect("retention");
    let t = store
        .timeline(&h, old_minute - HOUR_MS, now, Resolution::Minute)
        .await
        .expect("retention: timeline");
    assert_eq!(
        t.aggregates
            .iter()
            .map(|a| a.bucket_start_ms)
            .collect::<Vec<_>>(),
        vec![Resolution::Minute.bucket_start(young_minute)],
        "retention: minute aggregates past retention are gone, younger ones stay"
    );
    // Two queries: one range may span at most 400 days.
    let old = store
        .audit(&m, old_audit - DAY_MS, old_audit + DAY_MS)
        .await
        .expect("retention: old audit");
    assert!(old.is_empty(), "retention: audit past retention is gone");
    let young = store
        .audit(&m, now - 2 * DAY_MS, now)
        .await
        .expect("retention: young audit");
    assert_eq!(
        young.iter().map(|e| e.audit_id.clone()).collect::<Vec<_>>(),
        vec![format!("ret-new-{run}")],
        "retention: audit within retention stays"
    );
}
