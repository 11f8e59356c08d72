//! A Kafka-protocol broker for the Kafka tests and benchmarks: the one named
//! by `DOLBOM_KAFKA_BROKERS`, or Tansu (`DOLBOM_TANSU`, `~/.cargo/bin/tansu`
//! or `tansu` on `PATH`) started on a free loopback port with in-memory
//! storage, stopped when the [`Broker`] is dropped.

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

/// Where the Tansu binary is, if anywhere.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DOLBOM_TANSU") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = PathBuf::from(home).join(".cargo/bin/tansu");
    if installed.exists() {
        return Some(installed);
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let broker = Broker {
        addr: format!("127.0.0.1:{port}"),
        child: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&broker.addr).is_err() {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("tansu did not start on {}", broker.addr),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(broker)
}

/// `DOLBOM_KAFKA_BROKERS` if set, else a freshly started Tansu; `None` when
/// there is neither.
pub fn broker() -> io::Result<Option<Broker>> {
    if let Ok(addr) = std::env::var("DOLBOM_KAFKA_BROKERS") {
        return Ok(Some(Broker { addr, child: None }));
    }
    tansu_binary().map(|bin| start_tansu(&bin)).transpose()
}
