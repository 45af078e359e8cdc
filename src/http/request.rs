//! [`RequestMeta`]: the facts of one request, fixed once when it arrives — its id, arrival
//! time, client address and the clock its latency is measured on — and the latency itself once
//! the answer is ready. The middleware creates it; handlers receive it as an extractor.

use std::cell::Cell;
use std::fmt;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tokio::sync::Notify;

use crate::audit::{Origin, micros_between};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The response header echoing the `X-Request-Id` a client sent (the response's own
/// `X-Request-Id` is the server's id, which is unique).
pub const CLIENT_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-client-request-id");

/// Longest client-supplied request id kept; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id that ties a request's response, log line and audit rows together. The server's id
/// is always [`RequestId::generate`]d, so it is unique; a client's `X-Request-Id` is kept beside
/// it ([`RequestMeta::client_id`]), since clients reuse theirs (retries do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh, time-ordered id (UUID v7).
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::now_v7().to_string().into())
    }

    /// Keeps a client's `X-Request-Id` only if it is short and made of safe characters, so it
    /// can be echoed in headers and logs without forging anything.
    pub fn from_client(value: &HeaderValue) -> Option<RequestId> {
        let s = value.to_str().ok()?;
        let ok = !s.is_empty()
            && s.len() <= MAX_REQUEST_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b));
        ok.then(|| RequestId(s.into()))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One request's facts. Clones share the latency cell (actix serves a request on one thread).
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The server's id: unique.
    pub id: RequestId,
    /// The client's id of the request: the `X-Request-Id` it sent, if usable, or the one its
    /// protocol carries in the body (the Open Inference Protocol's `id`), once parsed.
    client_id: Rc<std::cell::RefCell<Option<RequestId>>>,
    /// Calendar time of arrival, for the audit trail.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// The client's IP address (formatted only for the requests that record it).
    pub peer: Option<IpAddr>,
    /// Monotonic time of arrival: every latency of the request is measured from it.
    pub clock: Instant,
    /// Set by the handler when its answer is ready (after the audit commit in durable mode),
    /// so the log line and metrics carry the latency the audit row has.
    answered: Rc<Cell<Option<u64>>>,
}

impl RequestMeta {
    /// The facts of a request arriving now.
    pub fn arrive(req: &HttpRequest) -> RequestMeta {
        RequestMeta {
            id: RequestId::generate(),
            client_id: Rc::new(std::cell::RefCell::new(
                req.headers()
                    .get(&REQUEST_ID_HEADER)
                    .and_then(RequestId::from_client),
            )),
            received_at: chrono::Utc::now(),
            peer: req.peer_addr().map(|a| a.ip()),
            clock: Instant::now(),
            answered: Rc::default(),
        }
    }

    /// The client's IP address as text, as the audit store keeps it.
    pub fn client(&self) -> Option<Arc<str>> {
        self.peer.map(|ip| ip.to_string().into())
    }

    /// What the audit rows of this request share; `instance` names this replica.
    pub fn origin(&self, instance: &Arc<str>) -> Origin {
        Origin {
            request_id: Arc::clone(&self.id.0),
            client_request_id: self.client_id().map(|c| c.0),
            received_at: self.received_at,
            arrived: self.clock,
            client_addr: self.client(),
            writer: Some(Arc::clone(instance)),
        }
    }

    /// The client's id of the request, if it gave one.
    pub fn client_id(&self) -> Option<RequestId> {
        self.client_id.borrow().clone()
    }

    /// Sets the client's id of the request found in its body (it replaces a header's).
    pub fn set_client_id(&self, id: RequestId) {
        *self.client_id.borrow_mut() = Some(id);
    }

    /// Records the latency at which the answer became ready.
    pub fn answered(&self, latency_us: u64) {
        self.answered.set(Some(latency_us));
    }

    /// The latency recorded by [`RequestMeta::answered`], else the time since arrival.
    pub fn latency_us(&self) -> u64 {
        self.answered
            .get()
            .unwrap_or_else(|| micros_between(self.clock, Instant::now()))
    }
}

impl FromRequest for RequestMeta {
    type Error = actix_web::Error;
    type Future = Ready<Result<RequestMeta, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let meta = req.extensions().get::<RequestMeta>().cloned();
        ready(Ok(meta.unwrap_or_else(|| RequestMeta::arrive(req))))
    }
}

/// Requests being served now; shutdown waits until there are none. Once shutdown has begun
/// ([`InFlight::close_connections`]), every response asks its client to close the connection.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
    closing: AtomicBool,
}

/// One request in progress, until dropped.
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(self))
    }

    /// From now on, responses carry `Connection: close`.
    pub fn close_connections(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Resolves once no request is in progress.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_client_ids_only() {
        let ok = HeaderValue::from_static("req-42_a.b:c");
        assert_eq!(
            RequestId::from_client(&ok).unwrap().as_str(),
            "req-42_a.b:c"
        );
        for bad in ["", "has space", "quote\"", "tab\tx", "ünï"] {
            if let Ok(v) = HeaderValue::from_str(bad) {
                assert!(RequestId::from_client(&v).is_none(), "{bad:?} accepted");
            }
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert!(RequestId::from_client(&long).is_none());
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_request_ends() {
        let in_flight = Arc::new(InFlight::default());
        let a = in_flight.enter();
        let b = in_flight.enter();
        let waiter = {
            let f = Arc::clone(&in_flight);
            tokio::spawn(async move { f.idle().await })
        };
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
    }
}
