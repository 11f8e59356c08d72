//! The municipality gRPC API: `RegistryService`, `IncidentService`,
//! `StatisticsService`, behind one authenticating interceptor.
//!
//! Every call carries `authorization: Bearer <token>`; the interceptor
//! verifies it ([`dolbom_auth::Verifier`]) and puts the [`Principal`] in the
//! request. Handlers then scope by municipality: a resource of another
//! municipality is `NOT_FOUND` after the same lookup a missing one takes
//! (nothing leaks, the timing shape is the same); a listing that names
//! another municipality is `PERMISSION_DENIED` before any lookup.

use crate::core::{Core, Logged};
use crate::{registry, store, NotifyError};
use dolbom_auth::{Principal, Role, Verifier};
use dolbom_domain::convert::ts;
use dolbom_history::stats::Month;
use dolbom_history::HistoryStore;
use dolbom_proto::v1 as pb;
use pb::incident_service_server::IncidentService;
use pb::registry_service_server::RegistryService;
use pb::statistics_service_server::StatisticsService;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

impl From<NotifyError> for Status {
    fn from(e: NotifyError) -> Status {
        match e {
            NotifyError::Invalid { field, problem } => {
                Status::invalid_argument(format!("{field}: {problem}"))
            }
            NotifyError::NotFound(m) => Status::not_found(m),
            NotifyError::Denied(m) => Status::permission_denied(m),
            NotifyError::Exists(m) => Status::already_exists(m),
            NotifyError::Conflict(m) => Status::aborted(m),
            NotifyError::Precondition(m) => Status::failed_precondition(m),
            NotifyError::Unavailable(m) => Status::unavailable(m),
            other => {
                tracing::error!(error = %other, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// The interceptor: verifies the bearer token, or refuses the call.
pub fn authenticate(
    verifier: Arc<Verifier>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match verifier.verify_header(header) {
            Ok(p) => {
                req.extensions_mut().insert(p);
                Ok(req)
            }
            Err(e) => {
                metrics::counter!("dolbom_notify_auth_failures_total").increment(1);
                tracing::info!(reason = %e, "unauthenticated call refused");
                Err(Status::unauthenticated(e.to_string()))
            }
        }
    }
}

/// The municipality a listing addresses, checked against the caller, and
/// that `dong_code` (if any) lies in it. `prefix` names where the fields sit
/// in the request (`""` or `"filter."`).
pub(crate) fn listing_scope(
    who: &Principal,
    municipality_code: &str,
    dong_code: &str,
    prefix: &str,
) -> Result<String, NotifyError> {
    let municipality = who
        .listing_scope(municipality_code)
        .map_err(|e| NotifyError::invalid(&format!("{prefix}municipality_code"), &e.to_string()))?
        .ok_or_else(|| {
            NotifyError::Denied(format!("{prefix}municipality_code is not the caller's"))
        })?;
    if !dong_code.is_empty() && !dong_code.starts_with(&municipality) {
        return Err(NotifyError::invalid(
            &format!("{prefix}dong_code"),
            &format!("is not in {prefix}municipality_code"),
        ));
    }
    Ok(municipality)
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified caller"))
}

/// The three services over one core.
#[derive(Clone)]
pub struct Api {
    pub core: Arc<Core>,
    pub history: Arc<dyn HistoryStore>,
    /// Cancelled when the server shuts down: open watch streams end (clients
    /// reconnect with their cursor), so the drain does not wait on them.
    pub closing: tokio_util::sync::CancellationToken,
}

fn id_arg(v: &str, field: &str) -> Result<(), Status> {
    if v.is_empty() || v.len() > 200 {
        return Err(Status::invalid_argument(format!(
            "{field}: is required (1-200 characters)"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl RegistryService for Api {
    async fn create_household(
        &self,
        req: Request<pb::CreateHouseholdRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let who = principal(&req)?;
        Ok(Response::new(
            self.core.create_household(&who, req.into_inner()).await?,
        ))
    }

    async fn update_household(
        &self,
        req: Request<pb::UpdateHouseholdRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let who = principal(&req)?;
        Ok(Response::new(
            self.core.update_household(&who, req.into_inner()).await?,
        ))
    }

    async fn delete_household(
        &self,
        req: Request<pb::DeleteHouseholdRequest>,
    ) -> Result<Response<pb::DeleteHouseholdResponse>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        id_arg(&r.household_id, "household_id")?;
        self.core.delete_household(&who, &r.household_id).await?;
        Ok(Response::new(pb::DeleteHouseholdResponse {}))
    }

    async fn get_household(
        &self,
        req: Request<pb::GetHouseholdRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        id_arg(&r.household_id, "household_id")?;
        Ok(Response::new(
            self.core
                .get_household(&who, &r.household_id, r.include_contact)
                .await?,
        ))
    }

    async fn list_households(
        &self,
        req: Request<pb::ListHouseholdsRequest>,
    ) -> Result<Response<pb::ListHouseholdsResponse>, Status> {
        let who = principal(&req)?;
        Ok(Response::new(
            self.core.list_households(&who, req.into_inner()).await?,
        ))
    }

    async fn register_plug(
        &self,
        req: Request<pb::RegisterPlugRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = (principal(&req)?, req.into_inner());
        id_arg(&r.device_id, "device_id")?;
        self.change(&who, &r.household_id, "registry.RegisterPlug", move |c| {
            if !c.device_ids.contains(&r.device_id) {
                c.device_ids.push(r.device_id);
            }
            Ok(())
        })
        .await
    }

    async fn remove_plug(
        &self,
        req: Request<pb::RemovePlugRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = (principal(&req)?, req.into_inner());
        self.change(&who, &r.household_id, "registry.RemovePlug", move |c| {
            let before = c.device_ids.len();
            c.device_ids.retain(|d| d != &r.device_id);
            if c.device_ids.len() == before {
                return Err(NotifyError::NotFound(format!("plug {}", r.device_id)));
            }
            Ok(())
        })
        .await
    }

    async fn set_consent(
        &self,
        req: Request<pb::SetConsentRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = (principal(&req)?, req.into_inner());
        self.change(&who, &r.household_id, "registry.SetConsent", move |c| {
            c.night_holiday_consent = r.night_holiday_consent;
            Ok(())
        })
        .await
    }

    async fn add_absence(
        &self,
        req: Request<pb::AddAbsenceRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = (principal(&req)?, req.into_inner());
        let absence = r
            .absence
            .ok_or_else(|| Status::invalid_argument("absence: is required"))?;
        self.change(&who, &r.household_id, "registry.AddAbsence", move |c| {
            c.absences.push(absence);
            Ok(())
        })
        .await
    }

    async fn end_absence(
        &self,
        req: Request<pb::EndAbsenceRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = (principal(&req)?, req.into_inner());
        let starts = r
            .starts_at
            .ok_or_else(|| Status::invalid_argument("starts_at: is required"))?;
        self.change(&who, &r.household_id, "registry.EndAbsence", move |c| {
            registry::end_absence(c, &starts)
        })
        .await
    }

    async fn set_thresholds(
        &self,
        req: Request<pb::SetThresholdsRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = (principal(&req)?, req.into_inner());
        self.change(&who, &r.household_id, "registry.SetThresholds", move |c| {
            if r.thresholds.is_some() {
                c.thresholds = r.thresholds;
            }
            if r.offline_after_minutes != 0 {
                c.offline_after_minutes = r.offline_after_minutes;
            }
            Ok(())
        })
        .await
    }
}

impl Api {
    /// One small registry change (plug, consent, absence, thresholds).
    async fn change<F>(
        &self,
        who: &Principal,
        household_id: &str,
        action: &'static str,
        f: F,
    ) -> Result<Response<pb::Household>, Status>
    where
        F: FnOnce(&mut pb::HouseholdConfig) -> Result<(), NotifyError> + Send + 'static,
    {
        id_arg(household_id, "household_id")?;
        Ok(Response::new(
            self.core
                .change_household(who, household_id, action, f)
                .await?,
        ))
    }
}

const MAX_INCIDENT_PAGE: u32 = 500;

/// The filter of a listing or a watch, checked against the caller.
struct Scoped {
    /// `None` = every municipality (national role, watch only).
    municipality: Option<String>,
    dong: Option<String>,
    household: Option<String>,
    kind: Option<i32>,
    min_stage: Option<i32>,
}

impl Scoped {
    fn new(who: &Principal, f: &pb::IncidentFilter, allow_all: bool) -> Result<Scoped, Status> {
        let municipality =
            if f.municipality_code.is_empty() && who.role == Role::National && allow_all {
                None
            } else {
                Some(listing_scope(
                    who,
                    &f.municipality_code,
                    &f.dong_code,
                    "filter.",
                )?)
            };
        let nonzero = |v: i32| (v != 0).then_some(v);
        if pb::IncidentKind::try_from(f.kind).is_err() {
            return Err(Status::invalid_argument("filter.kind: unknown value"));
        }
        if pb::Stage::try_from(f.min_stage).is_err() {
            return Err(Status::invalid_argument("filter.min_stage: unknown value"));
        }
        Ok(Scoped {
            municipality,
            dong: (!f.dong_code.is_empty()).then(|| f.dong_code.clone()),
            household: (!f.household_id.is_empty()).then(|| f.household_id.clone()),
            kind: nonzero(f.kind),
            min_stage: nonzero(f.min_stage),
        })
    }

    fn matches(&self, e: &pb::IncidentEvent) -> bool {
        self.municipality
            .as_ref()
            .is_none_or(|m| &e.municipality_code == m)
            && self.dong.as_ref().is_none_or(|d| &e.dong_code == d)
            && self.household.as_ref().is_none_or(|h| &e.household_id == h)
            && self.kind.is_none_or(|k| e.kind == k)
            && self.min_stage.is_none_or(|s| e.stage >= s)
    }
}

fn parse_cursor(c: &str) -> Result<Option<i64>, Status> {
    if c.is_empty() {
        return Ok(None);
    }
    c.strip_prefix("c")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .map(Some)
        .ok_or_else(|| Status::invalid_argument("resume_cursor: not a cursor from this API"))
}

fn cursor(seq: i64) -> String {
    format!("c{seq}")
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchIncidentsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IncidentService for Api {
    async fn list_incidents(
        &self,
        req: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        let f = r.filter.unwrap_or_default();
        let s = Scoped::new(&who, &f, false)?;
        if pb::IncidentState::try_from(f.state).is_err() {
            return Err(Status::invalid_argument("filter.state: unknown value"));
        }
        let limit = match r.page_size {
            0 => 100,
            n => n.min(MAX_INCIDENT_PAGE),
        } as usize;
        let before = if r.page_token.is_empty() {
            None
        } else {
            let (ms, id) = r
                .page_token
                .split_once(':')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| Status::invalid_argument("page_token: not a token from this API"))?;
            Some((ms, id))
        };
        let q = store::IncidentListing {
            municipality: s.municipality.clone().unwrap_or_default(),
            dong: s.dong,
            household: s.household,
            kind: s.kind,
            min_stage: s.min_stage,
            state: (f.state != 0).then_some(f.state),
            opened_after_ms: f.opened_after.as_ref().map(|t| ts(t).millis()),
            opened_before_ms: f.opened_before.as_ref().map(|t| ts(t).millis()),
            before,
            limit: limit + 1,
        };
        let mut rows = self
            .core
            .read(move |_, c| store::list_incidents(c, &q))
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_page_token = match (more, rows.last()) {
            (true, Some(v)) => format!(
                "{}:{}",
                v.opened_at.as_ref().map(|t| ts(t).millis()).unwrap_or(0),
                v.incident_id
            ),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents: rows,
            next_page_token,
        }))
    }

    async fn get_incident(
        &self,
        req: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let who = principal(&req)?;
        let id = req.into_inner().incident_id;
        id_arg(&id, "incident_id")?;
        let (w, i) = (who.clone(), id.clone());
        let row = self
            .core
            .read(move |core, c| core.visible_incident(c, &w, &i))
            .await?;
        let mut view = row.view;
        // The outcome note may hold personal data: only for callers allowed
        // to read it, and audited.
        if let (Some(sealed), true) = (&row.note, who.personal_data) {
            self.core
                .audit_now(
                    &who,
                    &view.municipality_code,
                    "incidents.GetIncident.note",
                    &id,
                )
                .await?;
            let plain = self.core.cipher.decrypt(&id, sealed)?;
            view.outcome_note = String::from_utf8_lossy(&plain).into_owned();
        }
        Ok(Response::new(view))
    }

    type WatchIncidentsStream = WatchStream;

    async fn watch_incidents(
        &self,
        req: Request<pb::WatchIncidentsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        let scope = Scoped::new(&who, &r.filter.unwrap_or_default(), true)?;
        let resume = parse_cursor(&r.resume_cursor)?;
        // Subscribe before reading where the log ends: nothing committed in
        // between is missed (duplicates are skipped by sequence number).
        let mut live = self.core.subscribe();
        let (max, min) = self
            .core
            .read(|_, c| Ok((store::max_seq(c)?, store::min_seq(c)?)))
            .await?;
        let mut last = match resume {
            Some(s) if s > max => {
                return Err(Status::invalid_argument("resume_cursor: ahead of the log"))
            }
            // Retention removed events after this cursor: resuming would
            // silently skip them. List incidents to resynchronise instead.
            Some(s) if s < min.unwrap_or(max + 1) - 1 => {
                return Err(Status::out_of_range(
                    "resume_cursor: older than the watch log keeps (log_retention_days); list incidents and watch from now",
                ))
            }
            Some(s) => s,
            None => max,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let core = self.core.clone();
        let closing = self.closing.clone();
        metrics::gauge!("dolbom_notify_watchers").increment(1.0);
        tokio::spawn(async move {
            let send = |l: &Logged| {
                let msg = pb::WatchIncidentsResponse {
                    event: Some(l.event.clone()),
                    cursor: cursor(l.seq),
                };
                let tx = tx.clone();
                async move { tx.send(Ok(msg)).await.is_ok() }
            };
            'outer: loop {
                // Catch up from the log.
                loop {
                    let m = scope.municipality.clone();
                    let page = match core
                        .read(move |_, c| store::events_after(c, last, m.as_deref(), 500))
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(Status::from(e))).await;
                            break 'outer;
                        }
                    };
                    let n = page.len();
                    for (seq, event) in page {
                        last = seq;
                        let l = Logged { seq, event };
                        if scope.matches(&l.event) && !send(&l).await {
                            break 'outer;
                        }
                    }
                    if n < 500 {
                        break;
                    }
                }
                // Then live.
                loop {
                    tokio::select! {
                        _ = tx.closed() => break 'outer,
                        _ = closing.cancelled() => break 'outer,
                        item = live.recv() => match item {
                            Ok(l) => {
                                if l.seq <= last {
                                    continue;
                                }
                                last = l.seq;
                                if scope.matches(&l.event) && !send(&l).await {
                                    break 'outer;
                                }
                            }
                            // Fell behind the broadcast: read the gap from the log.
                            Err(RecvError::Lagged(_)) => continue 'outer,
                            Err(RecvError::Closed) => break 'outer,
                        }
                    }
                }
            }
            metrics::gauge!("dolbom_notify_watchers").decrement(1.0);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn acknowledge(
        &self,
        req: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        id_arg(&r.incident_id, "incident_id")?;
        Ok(Response::new(
            self.core.acknowledge(&who, &r.incident_id, &r.note).await?,
        ))
    }

    async fn resolve(
        &self,
        req: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        id_arg(&r.incident_id, "incident_id")?;
        Ok(Response::new(
            self.core
                .resolve(&who, &r.incident_id, r.outcome, &r.note)
                .await?,
        ))
    }
}

#[tonic::async_trait]
impl StatisticsService for Api {
    async fn get_statistics(
        &self,
        req: Request<pb::StatisticsRequest>,
    ) -> Result<Response<pb::StatisticsResponse>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        let municipality = listing_scope(&who, &r.municipality_code, &r.dong_code, "")?;
        let from = Month::parse(&r.from_month)
            .ok_or_else(|| Status::invalid_argument("from_month: expected YYYY-MM"))?;
        let to = Month::parse(&r.to_month)
            .ok_or_else(|| Status::invalid_argument("to_month: expected YYYY-MM"))?;
        if to < from {
            return Err(Status::invalid_argument("to_month: before from_month"));
        }
        let mut months = Vec::new();
        let mut m = from;
        loop {
            if months.len() >= 24 {
                return Err(Status::invalid_argument(
                    "to_month: at most 24 months at once",
                ));
            }
            let dong = (!r.dong_code.is_empty()).then_some(r.dong_code.as_str());
            let s = self
                .history
                .statistics(&municipality, dong, m)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "statistics query failed");
                    Status::unavailable("the history store is unavailable")
                })?;
            months.push(s);
            if m == to {
                break;
            }
            m = m.next();
        }
        Ok(Response::new(pb::StatisticsResponse { months }))
    }
}
