//! A tiny HTTP/1.1 gateway on 127.0.0.1 (port 0: the OS picks a free one), built on
//! `std::net::TcpListener`: it records every request and answers from a script.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    unreachable_pub,
    reason = "test support"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the gateway answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status and JSON body.
    Status(u16, &'static str),
    /// This status and body, with a `Retry-After` of that many seconds.
    RetryAfter(u16, u64),
    /// This status, quoting the request's `text` back in the body (as some gateways do in
    /// their error messages).
    EchoText(u16),
    /// Read the request, then never answer (the connection stays open).
    Hang,
}

/// One request as the gateway received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Method and path, e.g. `POST /sms`.
    pub line: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// The gateway; it stops with the test process.
pub struct Gateway {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Gateway {
    /// Starts a gateway answering the `script` in order, then repeating its last reply.
    pub fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            let mut hanging = Vec::new();
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                let reply = script.get(n).unwrap_or(script.last().unwrap()).clone();
                let text = serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                seen.lock().unwrap().push(request);
                match reply {
                    Reply::Status(code, body) => respond(&mut stream, code, "", body),
                    Reply::RetryAfter(code, secs) => respond(
                        &mut stream,
                        code,
                        &format!("Retry-After: {secs}\r\n"),
                        r#"{"error":"slow down"}"#,
                    ),
                    Reply::EchoText(code) => {
                        let body = serde_json::json!({
                            "error": format!("text not allowed: {text}")
                        })
                        .to_string();
                        respond(&mut stream, code, "", &body);
                    }
                    Reply::Hang => hanging.push(stream),
                }
            }
        });
        Self { port, requests }
    }

    /// The URL to POST to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sms?token=t0k3n-in-query", self.port)
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        line: line.trim_end().to_owned(),
        headers,
        body,
    })
}

fn respond(stream: &mut TcpStream, code: u16, extra: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {code} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// A port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
