//! One open incident's actor: follows it through its stages until it
//! closes; its log lines and the open-incident gauge are its job.

use crate::metrics as m;
use dolbom_domain::incident::{EventType, Stage};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Instant;

pub enum IncidentMsg {
    /// An event of this incident was published.
    Event { event: EventType, stage: Stage },
}

/// Follows one open incident until it closes.
pub(crate) struct IncidentActor;

/// What an incident actor starts with.
pub(crate) struct IncidentArgs {
    pub(crate) id: String,
    pub(crate) household: String,
    pub(crate) stage: Stage,
}

pub(crate) struct IncidentState {
    id: String,
    household: String,
    stage: Stage,
    opened: Instant,
}

impl Actor for IncidentActor {
    type Msg = IncidentMsg;
    type State = IncidentState;
    type Arguments = IncidentArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<IncidentMsg>,
        a: IncidentArgs,
    ) -> Result<IncidentState, ActorProcessingErr> {
        metrics::gauge!(m::OPEN_INCIDENTS).increment(1.0);
        tracing::info!(incident = %a.id, household = %a.household, stage = a.stage.name(), "incident open");
        Ok(IncidentState {
            id: a.id,
            household: a.household,
            stage: a.stage,
            opened: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<IncidentMsg>,
        msg: IncidentMsg,
        st: &mut IncidentState,
    ) -> Result<(), ActorProcessingErr> {
        let IncidentMsg::Event { event, stage } = msg;
        if stage > st.stage {
            st.stage = stage;
            tracing::info!(incident = %st.id, household = %st.household, stage = stage.name(), "incident stage raised");
        }
        if event.closes() {
            tracing::info!(incident = %st.id, household = %st.household, open_seconds = st.opened.elapsed().as_secs(), "incident closed");
            myself.stop(None);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IncidentMsg>,
        _st: &mut IncidentState,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!(m::OPEN_INCIDENTS).decrement(1.0);
        Ok(())
    }
}
