//! An HTTP receiver standing in for the SMS gateway and webhook endpoints
//! in the process tests: it records every request and answers 204, or,
//! while `hang` is set, takes webhook requests without answering them.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as a gateway or webhook receiver saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub key: String,
    pub body: serde_json::Value,
    /// Answered 2xx (delivered, from notify's side).
    pub answered: bool,
}

impl Seen {
    /// Idempotency keys are per receiver: a message's SMS and its webhook
    /// carry the same message id.
    pub fn id(&self) -> (String, String) {
        (self.path.clone(), self.key.clone())
    }
}

/// An HTTP receiver for SMS and webhooks that records every request and,
/// while `hang` is set, takes webhook requests without ever answering them
/// (SMS are answered: delivered and recorded before the kill).
pub struct Receiver {
    pub url: String,
    pub hang: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    /// `hang`: whether webhook requests are taken and never answered at
    /// first (see `hang`).
    pub fn start(hang: bool) -> Receiver {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let hang = Arc::new(AtomicBool::new(hang));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (h, s) = (hang.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (hang, seen) = (h.clone(), s.clone());
                std::thread::spawn(move || serve(conn, &hang, &seen));
            }
        });
        Receiver { url, hang, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: std::net::TcpStream, hang: &AtomicBool, seen: &Mutex<Vec<Seen>>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let (mut len, mut key, mut path) = (0usize, String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if path.is_empty() {
                path = l.split(' ').nth(1).unwrap_or_default().to_string();
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("idempotency-key:") {
                key = l["idempotency-key:".len()..].trim().to_string();
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let i = {
            let mut s = seen.lock().unwrap();
            s.push(Seen {
                path,
                key,
                body: serde_json::from_slice(&body).unwrap_or_default(),
                answered: false,
            });
            s.len() - 1
        };
        if hang.load(Ordering::SeqCst) && !seen.lock().unwrap()[i].path.starts_with("/sms") {
            // Taken, never answered: the sender is killed meanwhile.
            while hang.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        if w.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .is_ok()
        {
            seen.lock().unwrap()[i].answered = true;
        } else {
            return;
        }
    }
}
