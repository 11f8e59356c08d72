//! A Kafka-protocol broker for the Kafka tests and benchmarks: the one named
//! by `DOLBOM_KAFKA_BROKERS`, or Tansu (`DOLBOM_TANSU`, the patched build
//! of `load-tests/tansu/build.sh`, `~/.cargo/bin/tansu` or `tansu` on `PATH`) started on a free loopback port with in-memory
//! storage, stopped when the [`Broker`] is dropped; and a
//! [`PersistentBroker`] keeping its log in a SQLite file, which a test can
//! SIGKILL and start again with what it held.

use crate::faultnet::KafkaProxy;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A broker to talk to; one this process started is killed on drop.
pub struct Broker {
    pub addr: String,
    child: Option<Child>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Broker {
    /// The broker's process id, when this process started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Where `load-tests/tansu/build.sh` (and `.ci/run`) installs Tansu 0.6.0
/// with its patches, under `$HOME`.
pub const PATCHED_TANSU: &str = ".cache/dolbom/tansu-0.6.0-dolbom.5/bin/tansu";

/// Where the Tansu binary is, if anywhere: `DOLBOM_TANSU`, else the patched
/// build ([`PATCHED_TANSU`]), else `~/.cargo/bin/tansu` or `tansu` on `PATH`
/// (an unpatched 0.6.0 can leave a consumer group without a leader after a
/// broker pause; see `load-tests/tansu/build.sh`).
pub fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DOLBOM_TANSU") {
        return Some(PathBuf::from(p));
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    for installed in [home.join(PATCHED_TANSU), home.join(".cargo/bin/tansu")] {
        if installed.exists() {
            return Some(installed);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.exists())
    })
}

/// Starts Tansu on a free loopback port and waits until it listens.
pub fn start_tansu(bin: &Path) -> io::Result<Broker> {
    start_tansu_advertising(bin, None)
}

/// Tansu behind a [`KafkaProxy`]: the broker advertises the proxy, so every
/// client reaches it through the proxy, whose cuts then inject faults.
/// `None` when there is no Tansu binary.
pub fn start_tansu_behind() -> io::Result<Option<(Broker, KafkaProxy)>> {
    let Some(bin) = tansu_binary() else {
        return Ok(None);
    };
    let front = TcpListener::bind("127.0.0.1:0")?;
    let broker = start_tansu_advertising(&bin, Some(&front.local_addr()?.to_string()))?;
    let proxy = KafkaProxy::start(front, broker.addr.clone())?;
    Ok(Some((broker, proxy)))
}

/// Starts Tansu on a free loopback port, advertising `advertised` (a proxy
/// or TLS terminator in front of it) instead of its own address when given.
pub fn start_tansu_advertising(bin: &Path, advertised: Option<&str>) -> io::Result<Broker> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(tansu_log()?)
        .stderr(tansu_log()?)
        .spawn()?;
    let mut broker = Broker {
        addr: format!("127.0.0.1:{port}"),
        child: Some(child),
    };
    until_listening(&broker.addr, broker.child.as_mut().expect("started"))?;
    Ok(broker)
}

/// Where a started Tansu's log goes: nowhere, unless `DOLBOM_TANSU_LOG`
/// names a file to append to (its filter from `RUST_LOG`, which Tansu
/// reads) — for looking into what the broker did during a failed test.
fn tansu_log() -> io::Result<Stdio> {
    match std::env::var_os("DOLBOM_TANSU_LOG") {
        Some(path) => Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .into()),
        None => Ok(Stdio::null()),
    }
}

/// Waits (up to 20 s) until a Tansu just started listens on `addr`; an
/// error if it exits first or never listens (then it is killed).
fn until_listening(addr: &str, child: &mut Child) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("tansu exited ({status})")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("tansu did not start on {addr}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `DOLBOM_KAFKA_BROKERS` if set, else a freshly started Tansu; `None` when
/// there is neither.
pub fn broker() -> io::Result<Option<Broker>> {
    if let Ok(addr) = std::env::var("DOLBOM_KAFKA_BROKERS") {
        return Ok(Some(Broker { addr, child: None }));
    }
    tansu_binary().map(|bin| start_tansu(&bin)).transpose()
}

/// Tansu keeping its log in a SQLite file (`--features libsql`), so that it
/// can be killed and started again on the same port with what it held: the
/// broker-restart fault. [`PersistentBroker::kill`] is a SIGKILL.
pub struct PersistentBroker {
    pub addr: String,
    bin: PathBuf,
    db: PathBuf,
    child: Option<Child>,
}

impl Drop for PersistentBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

impl PersistentBroker {
    /// Starts Tansu on a free loopback port with its log in `db` (an
    /// absolute path); `Ok(None)`
    /// when there is no Tansu or it was built without SQLite storage.
    pub fn start(db: &Path) -> io::Result<Option<PersistentBroker>> {
        let Some(bin) = tansu_binary() else {
            return Ok(None);
        };
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut b = PersistentBroker {
            addr: format!("127.0.0.1:{port}"),
            bin,
            db: db.to_path_buf(),
            child: None,
        };
        match b.restart() {
            Ok(()) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// SIGKILL: the broker goes without a word.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on its port and file, and waits until it
    /// listens. `Unsupported` when this Tansu has no SQLite storage.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let url = format!("tcp://{}", self.addr);
        let log_path = self.db.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .arg("--storage-engine")
            // sqlite:/// + an absolute path (Tansu drops one leading slash).
            .arg(format!("sqlite:///{}", self.db.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        if let Err(e) = until_listening(&self.addr, &mut child) {
            let why = std::fs::read_to_string(&log_path).unwrap_or_default();
            let kind = if why.to_lowercase().contains("feature") {
                io::ErrorKind::Unsupported
            } else {
                e.kind()
            };
            return Err(io::Error::new(kind, format!("{e}: {why}")));
        }
        self.child = Some(child);
        Ok(())
    }
}
