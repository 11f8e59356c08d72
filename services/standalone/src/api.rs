//! The notify service inside standalone: the municipality gRPC API over the
//! simulated town, on simulated time.
//!
//! The town's households are seeded into the registry; every incident event
//! of the shards goes through notify (escalation, watch log); registry
//! changes made over the API go onto the in-process bus to the shards, and
//! acknowledgements and resolutions into the history store (so statistics
//! count them). Tokens for trying it out are written to `data_dir/tokens/`.

use dolbom_auth::{Principal, SigningKey, Verifier};
use dolbom_domain::{HouseholdConfig, ManualClock};
use dolbom_escalation::Policy;
use dolbom_history::{HistoryStore, HistoryWriter};
use dolbom_notify::options::MunicipalityPolicy;
use dolbom_notify::{Core, NotifyError, NotifyOptions, PublishLoop, Publisher};
use dolbom_proto::v1 as pb;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Registry changes → the bus (the runner hands them to the shards);
/// the service's own incident events → history.
struct BusPublisher {
    to_bus: mpsc::UnboundedSender<HouseholdConfig>,
    history: OnceLock<HistoryWriter>,
}

#[async_trait::async_trait]
impl Publisher for BusPublisher {
    async fn household(
        &self,
        household_id: &str,
        config: Option<&pb::HouseholdConfig>,
    ) -> Result<(), NotifyError> {
        match config {
            Some(c) => {
                let cfg = HouseholdConfig::try_from(c)
                    .map_err(|e| NotifyError::invalid(&e.field, &e.problem))?;
                let _ = self.to_bus.send(cfg);
            }
            None => tracing::warn!(
                household = household_id,
                "standalone shards keep deleted households until the run ends"
            ),
        }
        Ok(())
    }

    async fn incident_event(&self, event: &pb::IncidentEvent) -> Result<(), NotifyError> {
        if let Some(w) = self.history.get() {
            w.send_incident_event(event.clone()).await?;
        }
        Ok(())
    }
}

/// What the API did during the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiSummary {
    pub endpoint: String,
    pub token_dir: String,
    #[serde(flatten)]
    pub counts: dolbom_notify::store::Counts,
}

pub(crate) struct Api {
    pub core: Arc<Core>,
    pub endpoint: String,
    pub token_dir: PathBuf,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), NotifyError>>,
    publish: PublishLoop,
    writer: Arc<HistoryWriter>,
}

fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    std::io::Write::write_all(&mut o.open(path)?, text.as_bytes())
}

/// Makes (or reuses) the token key in `dir` and writes a national operator
/// token and one for the town's municipality.
fn tokens(dir: &Path, municipality: &str) -> Result<Verifier, NotifyError> {
    std::fs::create_dir_all(dir)?;
    let key_file = dir.join("signing.key");
    let key = match std::fs::read_to_string(&key_file) {
        Ok(t) => SigningKey::from_text(&t).map_err(|e| NotifyError::Config(e.to_string()))?,
        Err(_) => {
            let k = SigningKey::generate("standalone")
                .map_err(|e| NotifyError::Config(e.to_string()))?;
            write_new(&key_file, &format!("{}\n", k.to_text()))?;
            k
        }
    };
    write_new(
        &dir.join("public.keys"),
        &format!("{}\n", key.verifying_key().to_text()),
    )?;
    let now = dolbom_auth::unix_now();
    let week = 7 * 24 * 3600;
    let mint = |p: &Principal| {
        key.mint(p, now, week)
            .map_err(|e| NotifyError::Config(e.to_string()))
    };
    write_new(
        &dir.join("national.token"),
        &mint(&Principal::national("standalone-operator"))?,
    )?;
    write_new(
        &dir.join(format!("{municipality}.token")),
        &mint(&Principal::municipality(
            &format!("{municipality}-office"),
            municipality,
            true,
        ))?,
    )?;
    Ok(Verifier::new(&[key.verifying_key()]))
}

impl Api {
    pub(crate) async fn start(
        listen: &str,
        data_dir: &Path,
        municipality: &str,
        store: Arc<dyn HistoryStore>,
        sim_clock: ManualClock,
        to_bus: mpsc::UnboundedSender<HouseholdConfig>,
        router_holidays: Option<PathBuf>,
    ) -> Result<Api, NotifyError> {
        let opts = NotifyOptions {
            data_dir: data_dir.to_path_buf(),
            create_contact_key: true,
            policies: vec![MunicipalityPolicy {
                municipality: "*".into(),
                // A laptop has no SMS gateway or webhook receivers.
                policy: Policy::watch_only(),
            }],
            holidays_file: router_holidays,
            // A laptop's API: reflection on, for grpcurl and friends.
            api: dolbom_notify::limits::ApiOptions {
                reflection: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let publisher = Arc::new(BusPublisher {
            to_bus,
            history: OnceLock::new(),
        });
        let built =
            dolbom_notify::build(&opts, sim_clock.shared(), publisher.clone(), store).await?;
        let _ = publisher.history.set((*built.history_writer).clone());
        let token_dir = data_dir.join("tokens");
        let verifier = tokens(&token_dir, municipality)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| NotifyError::Config(format!("grpc_listen {listen}: {e}")))?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let server = tokio::spawn(dolbom_notify::serve(
            built.api,
            verifier,
            listener,
            stop.clone(),
        ));
        // Publishing only: escalation clocks are ticked by the run loop on
        // simulated time.
        tokio::spawn(built.publish.clone().run(stop.clone()));
        Ok(Api {
            core: built.core,
            endpoint,
            token_dir,
            stop,
            server,
            publish: built.publish,
            writer: built.history_writer,
        })
    }

    pub(crate) async fn finish(self) -> Result<ApiSummary, NotifyError> {
        self.stop.cancel();
        self.server
            .await
            .map_err(|e| NotifyError::Internal(e.to_string()))??;
        self.core.drain_deliveries().await;
        self.publish.publish_pending().await?;
        self.core.history_flush().await;
        self.writer.flush().await?;
        Ok(ApiSummary {
            endpoint: self.endpoint,
            token_dir: self.token_dir.display().to_string(),
            counts: self.core.counts().await?,
        })
    }
}
