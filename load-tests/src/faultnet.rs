//! A Kafka-aware TCP proxy for fault injection: the network between real
//! processes and the broker, with a switch.
//!
//! The broker advertises the proxy's address (see
//! [`crate::broker::start_tansu_behind`]), so every client — bootstrap and
//! partition leaders alike — talks to the broker through it. The proxy reads
//! each request's frame header (size, api key, version, correlation id,
//! client id) and forwards it untouched, unless a [`Cut`] matches: then it
//! closes that connection before the request reaches the broker, as a
//! network partition between that one client and the broker would. Nothing
//! the cut request carried is written, so a test knows exactly what the
//! broker never saw. Responses are copied back byte for byte.
//!
//! Data flow: client → proxy (frame, match the cuts, forward or close) →
//! broker; broker → proxy → client.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Kafka's Produce request.
pub const PRODUCE: i16 = 0;

/// Which requests to cut: by api key (`None`: every request, so the
/// client cannot even reconnect) and by the client id that sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub api_key: Option<i16>,
    pub client_id: String,
}

#[derive(Default)]
struct Shared {
    cuts: Mutex<Vec<Cut>>,
    cut_requests: AtomicU64,
}

/// The proxy: listens on `addr` until dropped (its threads end when their
/// connections do).
pub struct KafkaProxy {
    pub addr: String,
    shared: Arc<Shared>,
}

impl KafkaProxy {
    /// Listens on `listener` and forwards to `upstream`.
    pub fn start(listener: TcpListener, upstream: String) -> io::Result<KafkaProxy> {
        let addr = listener.local_addr()?.to_string();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("kafka-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(broker) = TcpStream::connect(&upstream) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = broker.set_nodelay(true);
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let _ = pipe(client, broker, &s);
                    });
                }
            })?;
        Ok(KafkaProxy { addr, shared })
    }

    /// From now on, every request matching `cut` closes its connection.
    pub fn cut(&self, cut: Cut) {
        self.shared.cuts.lock().expect("cuts").push(cut);
    }

    /// Requests flow again.
    pub fn heal(&self) {
        self.shared.cuts.lock().expect("cuts").clear();
    }

    /// How many requests were cut so far.
    pub fn cut_requests(&self) -> u64 {
        self.shared.cut_requests.load(Ordering::Relaxed)
    }
}

/// The api key and client id of a request frame (without its size).
fn header(frame: &[u8]) -> Option<(i16, String)> {
    let api_key = i16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
    let len = i16::from_be_bytes(frame.get(8..10)?.try_into().ok()?);
    let client_id = if len < 0 {
        String::new()
    } else {
        String::from_utf8_lossy(frame.get(10..10 + len as usize)?).into_owned()
    };
    Some((api_key, client_id))
}

fn pipe(mut client: TcpStream, broker: TcpStream, s: &Shared) -> io::Result<()> {
    let mut from_broker = broker.try_clone()?;
    let mut to_client = client.try_clone()?;
    std::thread::spawn(move || {
        let _ = io::copy(&mut from_broker, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut to_broker = broker;
    let mut size = [0u8; 4];
    let mut frame = Vec::new();
    let close = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    loop {
        if client.read_exact(&mut size).is_err() {
            close(&client, &to_broker);
            return Ok(());
        }
        let n = i32::from_be_bytes(size).max(0) as usize;
        frame.resize(n, 0);
        client.read_exact(&mut frame)?;
        let cut = header(&frame).is_some_and(|(key, id)| {
            s.cuts
                .lock()
                .expect("cuts")
                .iter()
                .any(|c| c.api_key.is_none_or(|k| k == key) && c.client_id == id)
        });
        if cut {
            s.cut_requests.fetch_add(1, Ordering::Relaxed);
            // Give the client a moment before it reconnects, as a real
            // partition's connect timeouts would.
            std::thread::sleep(Duration::from_millis(20));
            close(&client, &to_broker);
            return Ok(());
        }
        to_broker.write_all(&size)?;
        to_broker.write_all(&frame)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_api_key_and_client_id() {
        let mut f = vec![0, 0, 0, 9, 0, 0, 0, 7, 0, 14];
        f.extend_from_slice(b"dolbom-monitor");
        f.extend_from_slice(&[0, 0]);
        assert_eq!(header(&f), Some((0, "dolbom-monitor".into())));
        let null = [0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff];
        assert_eq!(header(&null), Some((3, String::new())));
        assert_eq!(header(&[0, 1]), None);
    }

    #[test]
    fn forwards_until_cut_then_closes() {
        // An echo "broker" that answers every frame with its size prefix.
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = upstream.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for c in upstream.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = KafkaProxy::start(TcpListener::bind("127.0.0.1:0").unwrap(), up).unwrap();
        let frame = |key: i16| {
            let mut body = key.to_be_bytes().to_vec();
            body.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, b'x']);
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend(body);
            f
        };
        let mut c = TcpStream::connect(&proxy.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&frame(PRODUCE)).unwrap();
        let mut back = vec![0u8; frame(PRODUCE).len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, frame(PRODUCE));
        proxy.cut(Cut {
            api_key: Some(PRODUCE),
            client_id: "x".into(),
        });
        c.write_all(&frame(1)).unwrap(); // a Fetch still passes
        c.read_exact(&mut back).unwrap();
        c.write_all(&frame(PRODUCE)).unwrap();
        assert_eq!(
            c.read(&mut back).unwrap_or(0),
            0,
            "cut: the connection closes"
        );
        assert_eq!(proxy.cut_requests(), 1);
        proxy.heal();
        let mut c = TcpStream::connect(&proxy.addr).unwrap();
        c.write_all(&frame(PRODUCE)).unwrap();
        c.read_exact(&mut back).unwrap();
    }
}
