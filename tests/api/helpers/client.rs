//! The HTTP client of the tests: well-formed requests go through a real HTTP client (ureq);
//! requests malformed on purpose, or that must be written past the server's refusal, are
//! written byte by byte on a connection of their own. Both give a [`Response`], and
//! `TestApp`'s typed calls are built on them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::TestApp;

impl TestApp {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn post_predict(&self, body: &str) -> Response {
        self.post_json("/predict", body)
    }

    /// A `/predict` that must be answered 200; returns its request id.
    pub fn predict_ok(&self, body: &str) -> String {
        let res = self.post_predict(body);
        assert_eq!(res.status, 200, "{}", res.text());
        res.header("x-request-id")
            .expect("every answer carries its request id")
            .to_string()
    }

    /// One JSON page of `GET /audit?{query}`, which must be answered 200.
    pub fn audit_page(&self, query: &str) -> AuditPage {
        let res = self.get(&format!("/audit?{query}"));
        assert_eq!(res.status, 200, "/audit?{query}: {}", res.text());
        let body = res.json();
        AuditPage {
            records: body["records"].as_array().expect("records").clone(),
            next_cursor: body["next_cursor"].as_str().map(str::to_string),
        }
    }

    pub fn post_json(&self, path: &str, body: &str) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// A well-formed request with the given headers, sent by an HTTP client (ureq) on a
    /// connection of its own; any status is a [`Response`], only a transport failure panics.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let url = format!("http://{}{path}", self.addr());
        let agent = client();
        let res = match method {
            "GET" => send_any(with_headers(agent.get(&url), headers), body),
            "HEAD" => send_any(with_headers(agent.head(&url), headers), body),
            "DELETE" => send_any(with_headers(agent.delete(&url), headers), body),
            "OPTIONS" => send_any(with_headers(agent.options(&url), headers), body),
            "TRACE" => send_any(with_headers(agent.trace(&url), headers), body),
            "POST" => with_headers(agent.post(&url), headers).send(body),
            "PUT" => with_headers(agent.put(&url), headers).send(body),
            "PATCH" => with_headers(agent.patch(&url), headers).send(body),
            other => panic!("no client for method {other}; send it with `raw`"),
        };
        let res = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Response::from_client(res)
    }

    /// A well-formed request written by hand and sent without waiting to be read: for bodies
    /// the server refuses (413) and closes on before it has read them, where a client would
    /// report the broken write instead of the answer.
    pub fn request_unread(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut raw = format!("POST {path} HTTP/1.1\r\nHost: {}\r\n", self.addr()).into_bytes();
        for (k, v) in headers {
            raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        let end = format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        raw.extend_from_slice(end.as_bytes());
        raw.extend_from_slice(body);
        self.raw(&raw)
    }

    /// Sends bytes exactly as given and reads the response until the server closes.
    pub fn raw(&self, bytes: &[u8]) -> Response {
        send_raw(&self.addr(), bytes)
    }

    /// Polls `/health/ready` (no other traffic) until it answers `status`.
    pub fn wait_ready(&self, status: u16) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let res = self.get("/health/ready");
            if res.status == status {
                return res.json();
            }
            assert!(
                Instant::now() < deadline,
                "/health/ready stayed {}: {}",
                res.status,
                res.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One client per request: no pooled connection outlives it (a test that stops the server
/// waits for no idle keep-alive), statuses are answers rather than errors, bodies are kept as
/// sent (no decompression), and a stuck server fails the test instead of hanging it.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn with_headers<B>(
    mut builder: ureq::RequestBuilder<B>,
    headers: &[(&str, &str)],
) -> ureq::RequestBuilder<B> {
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
}

/// Sends a request of a method that takes no body by default, with `body` if it has one.
fn send_any(
    builder: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    body: &[u8],
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    if body.is_empty() {
        builder.call()
    } else {
        builder.force_send_body().send(body)
    }
}

/// Like [`send_raw`], but `None` when the connection fails or no full response comes back.
pub fn try_send_raw(addr: &str, bytes: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    stream.write_all(bytes).ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    buf.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| Response::parse(&buf))
}

pub fn send_raw(addr: &str, bytes: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer (413, 400) and close before it has read everything we send.
    let _ = stream.write_all(bytes);
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    Response::parse(&buf)
}

/// A page of `GET /audit`.
#[derive(Debug)]
pub struct AuditPage {
    pub records: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}

impl AuditPage {
    /// The request ids of the records, in page order.
    pub fn request_ids(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn parse(buf: &[u8]) -> Response {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response in {:?}", String::from_utf8_lossy(buf)));
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = buf[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        if chunked {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    fn from_client(res: ureq::http::Response<ureq::Body>) -> Response {
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
                (k.as_str().to_string(), value)
            })
            .collect();
        let mut body = Vec::new();
        res.into_body()
            .into_reader()
            .read_to_end(&mut body)
            .expect("read the response body");
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts this is an error response in the service's JSON shape and returns its code.
    pub fn error_code(&self) -> String {
        let body = self.json();
        let err = &body["error"];
        let code = err["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in {body}"));
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no error.message in {body}"
        );
        assert_eq!(
            err["request_id"].as_str(),
            self.header("x-request-id"),
            "error body and header disagree on the request id"
        );
        code.to_string()
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// The value of an unlabelled sample in a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
