//! The municipality gRPC API: `RegistryService`, `IncidentService`,
//! `StatisticsService`, behind one authenticating interceptor.
//!
//! Every call carries `authorization: Bearer <token>`; [`authenticate`]
//! verifies it ([`dolbom_auth::Verifier`]) and puts the [`Principal`] in the
//! request. The adapters below only unwrap requests, call the core (which
//! scopes every operation to the caller, see [`crate::scope`]) and wrap the
//! answers; errors become statuses in [`crate::error`].

use crate::core::Core;
use crate::error::NotifyError;
use crate::metrics as m;
use crate::registry_input::id_arg;
use crate::scope::listing_scope;
use dolbom_auth::{Principal, Verifier};
use dolbom_domain::logsafe::LogSafe;
use dolbom_history::stats::{Month, STATS_YEARS};
use dolbom_history::HistoryStore;
use dolbom_proto::v1 as pb;
use pb::incident_service_server::IncidentService;
use pb::registry_service_server::RegistryService;
use pb::statistics_service_server::StatisticsService;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// At most this many months in one statistics request.
const MAX_MONTHS: usize = 24;

/// The interceptor: verifies the bearer token, or refuses the call.
pub fn authenticate(
    verifier: Arc<Verifier>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match verifier.verify_header_token(header) {
            Ok((p, token)) => {
                req.extensions_mut().insert(p);
                req.extensions_mut().insert(TokenGuard {
                    verifier: verifier.clone(),
                    token,
                });
                Ok(req)
            }
            Err(e) => {
                metrics::counter!(m::AUTH_FAILURES).increment(1);
                // A flood of bad tokens must not flood the logs: at most one
                // line a second (the counter has them all).
                if let Some(skipped) = auth_log_allowed() {
                    tracing::info!(reason = %LogSafe(&e.to_string()), skipped, "unauthenticated call refused");
                }
                Err(Status::unauthenticated(e.to_string()))
            }
        }
    }
}

/// Whether this refused call may be logged (at most one a second); if so,
/// how many were not logged since the last one.
fn auth_log_allowed() -> Option<u64> {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    static LAST_S: AtomicI64 = AtomicI64::new(i64::MIN);
    static SKIPPED: AtomicU64 = AtomicU64::new(0);
    let now_s = dolbom_domain::Ts::now().millis() / 1000;
    let last = LAST_S.load(Ordering::Relaxed);
    if now_s > last
        && LAST_S
            .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        Some(SKIPPED.swap(0, Ordering::Relaxed))
    } else {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The token of a verified call, for a long call (a watch stream) to
/// re-check: it ends when the token expires or is revoked.
#[derive(Clone)]
pub struct TokenGuard {
    verifier: Arc<Verifier>,
    token: dolbom_auth::TokenInfo,
}

impl TokenGuard {
    /// The token still holds now.
    pub fn check(&self) -> Result<(), NotifyError> {
        self.verifier
            .still_valid(&self.token, dolbom_auth::unix_now())
            .map_err(|e| NotifyError::Unauthenticated(e.to_string()))
    }
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified caller"))
}

/// The caller and the request.
fn split<T>(req: Request<T>) -> Result<(Principal, T), Status> {
    Ok((principal(&req)?, req.into_inner()))
}

fn answer<T>(r: Result<T, NotifyError>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

/// The three services over one core.
#[derive(Clone)]
pub struct Api {
    pub core: Arc<Core>,
    pub history: Arc<dyn HistoryStore>,
    /// Cancelled when the server shuts down: open watch streams end (clients
    /// reconnect with their cursor), so the drain does not wait on them.
    pub closing: tokio_util::sync::CancellationToken,
    /// The server's limits and whether reflection is served.
    pub limits: crate::limits::ApiOptions,
    /// Open watch streams per token.
    pub watch_permits: crate::limits::WatchPermits,
    /// The server's TLS (certificate, key, client CA), read at build.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

#[tonic::async_trait]
impl RegistryService for Api {
    async fn create_household(
        &self,
        req: Request<pb::CreateHouseholdRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.create_household(&who, r).await)
    }

    async fn update_household(
        &self,
        req: Request<pb::UpdateHouseholdRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.update_household(&who, r).await)
    }

    async fn delete_household(
        &self,
        req: Request<pb::DeleteHouseholdRequest>,
    ) -> Result<Response<pb::DeleteHouseholdResponse>, Status> {
        let (who, r) = split(req)?;
        id_arg(&r.household_id, "household_id")?;
        self.core.delete_household(&who, &r.household_id).await?;
        Ok(Response::new(pb::DeleteHouseholdResponse {}))
    }

    async fn get_household(
        &self,
        req: Request<pb::GetHouseholdRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        id_arg(&r.household_id, "household_id")?;
        answer(
            self.core
                .get_household(&who, &r.household_id, r.include_contact)
                .await,
        )
    }

    async fn list_households(
        &self,
        req: Request<pb::ListHouseholdsRequest>,
    ) -> Result<Response<pb::ListHouseholdsResponse>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.list_households(&who, r).await)
    }

    async fn register_plug(
        &self,
        req: Request<pb::RegisterPlugRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.register_plug(&who, r).await)
    }

    async fn remove_plug(
        &self,
        req: Request<pb::RemovePlugRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.remove_plug(&who, r).await)
    }

    async fn set_consent(
        &self,
        req: Request<pb::SetConsentRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.set_consent(&who, r).await)
    }

    async fn add_absence(
        &self,
        req: Request<pb::AddAbsenceRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.add_absence(&who, r).await)
    }

    async fn end_absence(
        &self,
        req: Request<pb::EndAbsenceRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.end_absence(&who, r).await)
    }

    async fn set_thresholds(
        &self,
        req: Request<pb::SetThresholdsRequest>,
    ) -> Result<Response<pb::Household>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.set_thresholds(&who, r).await)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchIncidentsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IncidentService for Api {
    async fn list_incidents(
        &self,
        req: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let (who, r) = split(req)?;
        answer(self.core.list_incidents(&who, r).await)
    }

    async fn get_incident(
        &self,
        req: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let (who, r) = split(req)?;
        id_arg(&r.incident_id, "incident_id")?;
        answer(self.core.get_incident(&who, &r.incident_id).await)
    }

    type WatchIncidentsStream = WatchStream;

    async fn watch_incidents(
        &self,
        req: Request<pb::WatchIncidentsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let guard = req.extensions().get::<TokenGuard>().cloned();
        let (who, r) = split(req)?;
        // One token may hold only so many streams: a thousand from one
        // caller must not starve the others.
        let key = match &guard {
            Some(g) if !g.token.id.is_empty() => format!("jti:{}", g.token.id),
            _ => format!("sub:{}", who.subject),
        };
        let Some(permit) = self.watch_permits.take(&key) else {
            metrics::counter!(m::WATCH_REFUSED).increment(1);
            return Err(Status::resource_exhausted(format!(
                "at most {} open WatchIncidents streams per token",
                self.limits.watch_streams_per_token
            )));
        };
        let items = self
            .core
            .watch_incidents(&who, r, self.closing.clone(), guard)
            .await?;
        // The permit lives as long as the stream.
        let stream = tokio_stream::wrappers::ReceiverStream::new(items).map(move |item| {
            let _held = &permit;
            item.map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acknowledge(
        &self,
        req: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let (who, r) = split(req)?;
        id_arg(&r.incident_id, "incident_id")?;
        answer(self.core.acknowledge(&who, &r.incident_id, &r.note).await)
    }

    async fn resolve(
        &self,
        req: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let (who, r) = split(req)?;
        id_arg(&r.incident_id, "incident_id")?;
        answer(
            self.core
                .resolve(&who, &r.incident_id, r.outcome, &r.note)
                .await,
        )
    }
}

#[tonic::async_trait]
impl StatisticsService for Api {
    async fn get_statistics(
        &self,
        req: Request<pb::StatisticsRequest>,
    ) -> Result<Response<pb::StatisticsResponse>, Status> {
        let (who, r) = split(req)?;
        let municipality = listing_scope(&who, &r.municipality_code, &r.dong_code, "")?;
        let bad = |field: &str| {
            let (a, b) = (STATS_YEARS.start(), STATS_YEARS.end());
            Status::invalid_argument(format!("{field}: expected YYYY-MM, {a}–{b}"))
        };
        let from = Month::parse(&r.from_month).ok_or_else(|| bad("from_month"))?;
        let to = Month::parse(&r.to_month).ok_or_else(|| bad("to_month"))?;
        if to < from {
            return Err(Status::invalid_argument("to_month: before from_month"));
        }
        let dong = (!r.dong_code.is_empty()).then_some(r.dong_code.as_str());
        let mut months = Vec::new();
        let mut m = from;
        loop {
            if months.len() >= MAX_MONTHS {
                return Err(Status::invalid_argument(
                    "to_month: at most 24 months at once",
                ));
            }
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

#[cfg(test)]
mod tests {
    #[test]
    fn refused_calls_are_logged_at_most_once_a_second() {
        let logged = (0..10_000)
            .filter(|_| super::auth_log_allowed().is_some())
            .count();
        // 10 000 refusals take far less than a second; at most a second
        // boundary falls in between.
        assert!((1..=2).contains(&logged), "{logged}");
    }
}
