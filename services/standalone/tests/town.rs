//! The standalone runner end to end on a small town: every scripted incident is
//! raised, nothing else is, no event id repeats; pacing uses paused time.

use dolbom_standalone::{run, StandaloneOptions};
use tokio_util::sync::CancellationToken;

fn small() -> StandaloneOptions {
    StandaloneOptions {
        households: 200,
        quiet: 4,
        quiet_recovering: 1,
        offline: 2,
        hospital: 2,
        sim_hours: 60,
        speed: 0,
        print_events: false,
        // No history unless a test asks for it (never ./dolbom-data).
        data_dir: Default::default(),
        grpc_listen: "127.0.0.1:0".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_town_matches_its_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StandaloneOptions {
        data_dir: dir.path().to_path_buf(),
        ..small()
    };
    let s = run(&opts, CancellationToken::new()).await.unwrap();
    assert!(s.passed(), "{}", s.render());
    assert_eq!(s.simulated_minutes, 60 * 60);
    // 3 quiet for good + 2 offline must be raised; the recovering quiet one
    // may come back before ATTENTION is certain to be due.
    assert!(s.expected >= 5, "{}", s.render());
    assert_eq!(s.detected, s.expected);
    assert!(s.readings > 200 * 60 * 59, "{}", s.readings);
    assert_eq!(s.readings_rejected, 0);
    // The quiet households that never recover reach DANGER within 60 h.
    let danger = s
        .incidents
        .iter()
        .filter(|r| r.highest_stage == "DANGER")
        .count();
    assert!(danger >= 3, "{}", s.render());
    check_history(&opts, &s).await;
    // Every incident went through notify too, and the town is in its registry.
    let api = s.api.as_ref().expect("the gRPC API ran");
    assert_eq!(api.counts.households, 200);
    assert_eq!(api.counts.incidents as usize, s.incidents.len());
    assert_eq!(api.counts.messages_failed, 0);
}

/// The API over the running town: a municipality token lists its incidents
/// and acknowledges one; the acknowledgement reaches the history store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_api_serves_the_town_while_it_runs() {
    use dolbom_proto::v1 as pb;
    use pb::incident_service_client::IncidentServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = StandaloneOptions {
        data_dir: dir.path().to_path_buf(),
        grpc_listen: format!("127.0.0.1:{port}"),
        serve: true,
        ..small()
    };
    let stop = CancellationToken::new();
    let run_task = {
        let (opts, stop) = (opts.clone(), stop.clone());
        tokio::spawn(async move { run(&opts, stop).await.unwrap() })
    };
    // The run writes its tokens before the first simulated minute; with
    // `serve` the API stays up after the last one.
    let token_file = dir.path().join("tokens/11110.token");
    let channel = loop {
        if token_file.exists() {
            if let Ok(c) =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
            {
                break c;
            }
        }
        tokio::task::yield_now().await;
    };
    let token = std::fs::read_to_string(&token_file).unwrap();
    let auth = move |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(r)
    };
    let mut c = IncidentServiceClient::with_interceptor(channel, auth);
    // Watch from the start of the log until the quiet households' incidents
    // are there (the simulation runs as fast as it can).
    let mut w = c
        .watch_incidents(pb::WatchIncidentsRequest {
            filter: Some(pb::IncidentFilter {
                kind: pb::IncidentKind::Inactivity as i32,
                ..Default::default()
            }),
            resume_cursor: "c0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = w.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!(first.r#type, pb::IncidentEventType::Opened as i32);
    let inc = c
        .acknowledge(pb::AcknowledgeRequest {
            incident_id: first.incident_id.clone(),
            note: "방문 예정".into(),
        })
        .await;
    // The incident may already have recovered on its own; both are answers.
    match inc {
        Ok(i) => assert_eq!(i.into_inner().acknowledged_by, "11110-office"),
        Err(e) => assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}"),
    }
    let list = c
        .list_incidents(pb::ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!list.incidents.is_empty());
    drop(w);
    stop.cancel();
    let s = run_task.await.unwrap();
    let api = s.api.expect("api summary");
    assert_eq!(api.counts.households, 200);
}

/// The embedded history holds every published event once, the state changes
/// they imply, and minute and hour aggregates that add up to the readings.
async fn check_history(opts: &StandaloneOptions, s: &dolbom_standalone::Summary) {
    use dolbom_history::{EmbeddedStore, HistoryStore, IncidentQuery, Resolution, HOUR_MS};
    let h = s.history.as_ref().expect("history summary");
    assert!(h.records_written > 0);
    let store = EmbeddedStore::open_dir(&opts.data_dir, opts.retention).unwrap();
    let start = dolbom_domain::Ts::parse_rfc3339(&opts.start)
        .unwrap()
        .millis();
    let end = start + i64::from(opts.sim_hours) * HOUR_MS + HOUR_MS;
    // Every incident of the run, through the municipality query.
    let first = s.incidents.first().expect("incidents");
    let events = store.incident_events(&first.incident_id).await.unwrap();
    assert!(!events.is_empty());
    let municipality = events[0].municipality_code.clone();
    let mut q = IncidentQuery {
        municipality_code: municipality.clone(),
        from_ms: start - HOUR_MS,
        to_ms: end,
        limit: 1000,
        ..Default::default()
    };
    let mut stored = Vec::new();
    loop {
        let page = store.incidents(&q).await.unwrap();
        stored.extend(page.events);
        match page.next_page_token {
            Some(t) => q.page_token = Some(t),
            None => break,
        }
    }
    let household_events = s.events as usize;
    assert_eq!(stored.len(), household_events, "every event stored once");
    // A quiet household's timeline: its state changes and hourly aggregates.
    let quiet = s
        .incidents
        .iter()
        .find(|r| r.kind == "INACTIVITY")
        .expect("an inactivity incident");
    let t = store
        .timeline(&quiet.household_id, start - HOUR_MS, end, Resolution::Hour)
        .await
        .unwrap();
    assert!(!t.state_changes.is_empty(), "state changes recorded");
    assert!(
        !t.incident_events.is_empty(),
        "incident events on the timeline"
    );
    assert!(
        t.aggregates.len() >= opts.sim_hours as usize,
        "{} hours",
        t.aggregates.len()
    );
    let minutes = store
        .timeline(
            &quiet.household_id,
            start,
            start + 2 * HOUR_MS,
            Resolution::Minute,
        )
        .await
        .unwrap();
    let from_minutes: u32 = minutes.aggregates[..60].iter().map(|a| a.readings).sum();
    let hour_start = t
        .aggregates
        .iter()
        .find(|a| a.bucket_start_ms == start)
        .unwrap();
    assert_eq!(
        hour_start.readings, from_minutes,
        "hour = sum of its minutes"
    );
}

#[tokio::test(start_paused = true)]
async fn paced_runs_follow_simulated_time_and_stop_on_shutdown() {
    let opts = StandaloneOptions {
        speed: 3600, // one simulated hour per second of (paused) tokio time
        ..small()
    };
    let token = CancellationToken::new();
    let stopper = token.clone();
    let started = tokio::time::Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        stopper.cancel();
    });
    let s = run(&opts, token).await.unwrap();
    assert!(s.cancelled);
    let elapsed = started.elapsed().as_secs_f64();
    assert!((9.9..=10.5).contains(&elapsed), "elapsed {elapsed}");
    // Ten seconds at 3600x is ten simulated hours.
    assert!(
        (595..=601).contains(&s.simulated_minutes),
        "{}",
        s.simulated_minutes
    );
}
