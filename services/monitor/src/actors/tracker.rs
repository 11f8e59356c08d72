//! A shard's open incidents and their actors: one
//! [`IncidentActor`](super::incident::IncidentActor) per open incident.
//!
//! The shard actor hands every event it publishes to
//! [`IncidentTracker::follow`]. An opening queues its actor; the queue is
//! started a bounded number per tick ([`IncidentTracker::start_queued`]), so
//! a burst of openings (a mass of deadlines due at once) is published first
//! and its actors come up over the following ticks instead of competing with
//! it. Events that arrive before an actor runs are buffered for it and
//! delivered when it reports in ([`IncidentTracker::started`]); a closing
//! event ends the tracking.

use super::incident::{IncidentActor, IncidentArgs, IncidentMsg};
use super::shard::ShardMsg;
use dolbom_domain::convert::{event_type_from_wire, stage_from_wire};
use dolbom_domain::incident::{EventType, Stage};
use dolbom_proto::v1 as pb;
use ractor::{Actor, ActorRef};
use std::collections::{HashMap, VecDeque};

/// Incident actors started per shard tick.
const INCIDENT_ACTOR_SPAWNS_PER_TICK: usize = 256;

/// An incident event as its actor follows it.
type Followed = (EventType, Stage);

/// An open incident's actor, or the events waiting for it to start.
enum Tracked {
    Starting(Vec<Followed>),
    Running(ActorRef<IncidentMsg>),
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct IncidentTracker {
    incidents: HashMap<String, Tracked>,
    /// Incident actors waiting to be started.
    to_spawn: VecDeque<IncidentArgs>,
}

/// How an event changes its incident's actor.
fn followed(ev: &pb::IncidentEvent) -> Option<Followed> {
    Some((
        event_type_from_wire(ev.r#type, ev.suppression_cause)?,
        stage_from_wire(ev.stage).unwrap_or(Stage::Normal),
    ))
}

impl IncidentTracker {
    /// Follows one published event: to its running actor, into its
    /// starting actor's buffer, or (an opening) queues a new actor.
    pub(crate) fn follow(&mut self, ev: &pb::IncidentEvent) {
        let Some(f) = followed(ev) else { return };
        let closing = f.0.closes();
        match self.incidents.get_mut(&ev.incident_id) {
            Some(Tracked::Running(a)) => {
                let _ = a.cast(IncidentMsg::Event {
                    event: f.0,
                    stage: f.1,
                });
                if closing {
                    self.incidents.remove(&ev.incident_id);
                }
            }
            Some(Tracked::Starting(buffered)) => buffered.push(f),
            None if closing => {}
            None => {
                self.incidents
                    .insert(ev.incident_id.clone(), Tracked::Starting(Vec::new()));
                self.to_spawn.push_back(IncidentArgs {
                    id: ev.incident_id.clone(),
                    household: ev.household_id.clone(),
                    stage: f.1,
                });
            }
        }
    }

    /// An incident restored from a snapshot, its actor already running.
    pub(crate) fn running(&mut self, id: String, actor: ActorRef<IncidentMsg>) {
        self.incidents.insert(id, Tracked::Running(actor));
    }

    /// An actor started off the shard's path reports in (`None`: it failed
    /// to start); it gets what was buffered for it.
    pub(crate) fn started(&mut self, id: String, actor: Option<ActorRef<IncidentMsg>>) {
        let Some(Tracked::Starting(buffered)) = self.incidents.remove(&id) else {
            return;
        };
        let Some(a) = actor else { return };
        let mut closed = false;
        for (event, stage) in buffered {
            let _ = a.cast(IncidentMsg::Event { event, stage });
            closed |= event.closes();
        }
        if !closed {
            self.incidents.insert(id, Tracked::Running(a));
        }
    }

    /// Starts queued incident actors, at most
    /// [`INCIDENT_ACTOR_SPAWNS_PER_TICK`], linked to the shard actor
    /// `myself`, each reporting back with [`ShardMsg::IncidentStarted`].
    pub(crate) fn start_queued(&mut self, myself: &ActorRef<ShardMsg>) {
        for _ in 0..INCIDENT_ACTOR_SPAWNS_PER_TICK {
            let Some(args) = self.to_spawn.pop_front() else {
                break;
            };
            if !matches!(self.incidents.get(&args.id), Some(Tracked::Starting(_))) {
                continue;
            }
            let cell = myself.get_cell();
            let me = myself.clone();
            tokio::spawn(async move {
                let id = args.id.clone();
                let started = Actor::spawn_linked(None, IncidentActor, args, cell).await;
                if let Err(e) = &started {
                    tracing::warn!(incident = %id, error = %e, "incident actor did not start");
                }
                let _ = me.cast(ShardMsg::IncidentStarted {
                    id,
                    actor: started.ok().map(|s| s.0),
                });
            });
        }
    }
}
