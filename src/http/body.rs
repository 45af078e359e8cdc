//! Reading request bodies: the content type, the size limit and the deadline, and decoding a
//! small JSON body into a typed value with errors that say what was expected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{HttpRequest, web};

use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Unprocessable};
use crate::text::escape_controls;

/// JSON is expected. A request without a Content-Type is read as JSON too (the tutorial's
/// clients and plain `curl --data` users get an answer, not a 415); any other type is a 415.
pub fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = value.to_str().unwrap_or("").trim();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "Content-Type must be application/json, got {}",
        escape_controls(&format!("{ct:?}"))
    )))
}

/// The bytes of request bodies all connections together may hold while they are read: each
/// body takes its share as it grows and gives it back when its [`BodyPermit`] is dropped.
/// One client address may hold only a part of it (by default a quarter, [`CLIENT_SHARE`]), so
/// a client that opens hundreds of slow bodies cannot take the budget from every other client.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    per_client: usize,
    used: AtomicUsize,
    /// Bytes held per client address (addresses holding none are not kept).
    by_client: Mutex<HashMap<IpAddr, usize>>,
    /// The bodies held passed half the budget: once they are given back, the allocator is
    /// asked to return its free memory to the system (see [`trim_after_flood`]).
    flooded: AtomicBool,
}

/// The part of the budget one client address may hold by default.
pub const CLIENT_SHARE: usize = 4;

impl BodyBudget {
    /// A budget of `limit` bytes, of which one client address may hold `per_client`
    /// (`None`: a [`CLIENT_SHARE`]th of it).
    pub fn new(limit: usize, per_client: Option<usize>) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limit,
            per_client: per_client
                .unwrap_or(limit / CLIENT_SHARE)
                .clamp(1, limit.max(1)),
            used: AtomicUsize::new(0),
            by_client: Mutex::new(HashMap::new()),
            flooded: AtomicBool::new(false),
        })
    }

    /// An empty share of the budget, for a body from `client`.
    pub fn permit(self: &Arc<Self>, client: Option<IpAddr>) -> BodyPermit {
        BodyPermit {
            budget: Arc::clone(self),
            bytes: 0,
            client,
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `bytes` back to `client`'s share (an address holding nothing is forgotten).
    fn give_back_share(&self, client: Option<IpAddr>, bytes: usize) {
        let Some(ip) = client else {
            return;
        };
        let mut clients = self.clients();
        if let Some(held) = clients.get_mut(&ip) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                clients.remove(&ip);
            }
        }
    }

    /// Gives `bytes` back, from `client`'s share too.
    fn give_back(&self, client: Option<IpAddr>, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.give_back_share(client, bytes);
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        let now = before.saturating_sub(bytes);
        if now < self.limit / 8 && self.flooded.swap(false, Ordering::AcqRel) {
            trim_after_flood();
        }
    }
}

/// After a flood of bodies, the allocator keeps the memory they held for reuse: hundreds of
/// megabytes of a process that is idle again. Asks it (glibc's `malloc_trim`, on a thread of
/// its own: it may take milliseconds) to return what is free to the system.
fn trim_after_flood() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::spawn(|| {
        // SAFETY: malloc_trim has no preconditions; it only releases free heap memory.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

/// One body's share of the [`BodyBudget`], returned when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    bytes: usize,
    client: Option<IpAddr>,
}

impl BodyPermit {
    /// Grows the share to `total` bytes; 503 `overloaded` if the budget, or the client's
    /// share of it, has no room.
    fn grow_to(&mut self, total: usize) -> Result<(), ApiError> {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        let budget = &self.budget;
        if let Some(ip) = self.client {
            let mut clients = budget.clients();
            let held = clients.entry(ip).or_insert(0);
            if *held + more > budget.per_client {
                if *held == 0 {
                    clients.remove(&ip);
                }
                return Err(ApiError::Overloaded {
                    budget: budget.limit,
                    client_share: Some(budget.per_client),
                });
            }
            *held += more;
        }
        let before = budget.used.fetch_add(more, Ordering::AcqRel);
        if before + more > budget.limit {
            budget.used.fetch_sub(more, Ordering::AcqRel);
            budget.give_back_share(self.client, more);
            return Err(ApiError::Overloaded {
                budget: budget.limit,
                client_share: None,
            });
        }
        if before + more > budget.limit / 2 {
            budget.flooded.store(true, Ordering::Release);
        }
        self.bytes = total;
        Ok(())
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        self.budget.give_back(self.client, self.bytes);
    }
}

/// The first buffer of a body: larger bodies grow from it as their bytes arrive.
const FIRST_BUFFER: usize = 16 * 1024;

/// Reads the whole body, refusing it as soon as it passes `limit` bytes, when the bodies being
/// read together would pass their budget, or when it has not arrived within `timeout`. The
/// permit holds the body's share of the budget: keep it as long as the body.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    budget: &Arc<BodyBudget>,
    timeout: std::time::Duration,
) -> Result<(web::BytesMut, BodyPermit), ApiError> {
    let mut permit = budget.permit(req.peer_addr().map(|a| a.ip()));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    // The budget is charged with the memory the body really holds (its buffer's capacity),
    // as it arrives: a client that announces a large body and trickles it holds only what it
    // has sent, so slow clients cannot starve the others of the budget with promises.
    // A client that trickles its body (a byte a second) gets a 408 instead of holding the
    // request, its connection and the shutdown drain for as long as it likes.
    let read = async {
        let first = declared.unwrap_or(256).min(limit).min(FIRST_BUFFER);
        permit.grow_to(first)?;
        let mut body = web::BytesMut::with_capacity(first);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::MalformedJson(format!("could not read the request body: {e}"))
            })?;
            let len = body.len() + chunk.len();
            if len > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            if len > body.capacity() {
                // Doubling (as the buffer would), up to the declared length or the limit.
                let grown = (body.capacity() * 2)
                    .max(len)
                    .min(declared.unwrap_or(limit).max(len))
                    .min(limit);
                permit.grow_to(grown)?;
                body.reserve(grown - body.len());
                // The buffer may have taken more than asked for: that counts too.
                permit.grow_to(body.capacity())?;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = actix_web::rt::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout { after: timeout })??;
    Ok((body, permit))
}

/// Decodes a JSON body into `T`: 400 when it is not JSON, 422 naming `expected` when it does
/// not have T's shape.
pub fn decode_json<T: DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Unprocessable {
            code: Unprocessable::InvalidBody,
            message: format!("expected {expected}: {e}"),
        },
        _ => ApiError::MalformedJson(format!("request body is not valid JSON: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(100, Some(100));
        let mut a = budget.permit(None);
        let mut b = budget.permit(None);
        a.grow_to(60).unwrap();
        a.grow_to(60).unwrap(); // no more than it holds
        assert_eq!(b.grow_to(50).unwrap_err().code(), "overloaded");
        b.grow_to(40).unwrap();
        drop(a);
        b.grow_to(100).unwrap();
        drop(b);
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
    }

    #[test]
    fn one_client_address_holds_at_most_its_share() {
        let budget = BodyBudget::new(400, None);
        let (one, other) = ("10.0.0.1".parse().ok(), "10.0.0.2".parse().ok());
        let mut a = budget.permit(one);
        let mut b = budget.permit(one);
        a.grow_to(60).unwrap();
        let e = b.grow_to(50).unwrap_err();
        assert_eq!(e.code(), "overloaded");
        assert!(e.to_string().contains("this client address"), "{e}");
        b.grow_to(40).unwrap();
        // Another address has its own share, and the budget has room for it.
        let mut c = budget.permit(other);
        c.grow_to(100).unwrap();
        drop(a);
        b.grow_to(100).unwrap();
        drop((b, c));
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
        assert!(
            budget.clients().is_empty(),
            "no address is kept once it holds nothing"
        );
    }
}
