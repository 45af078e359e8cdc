//! The open client connections, so that shutdown can close the idle ones at once. actix offers
//! no way to close a keep-alive connection that waits for its next request: left alone, it
//! stays open until its keep-alive timeout, and a client may send it one more request.
//!
//! Each accepted connection is registered with a duplicate of its socket's descriptor (so the
//! descriptor can never be a reused number belonging to something else) and a count of the
//! requests it is serving. At shutdown, [`Connections::close_idle`] shuts down every socket
//! serving no request; actix then sees the end of the stream and drops the connection. A
//! request whose bytes were arriving at that very moment was never read, so nothing it asked
//! for was done or acknowledged.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Every open client connection.
#[derive(Debug, Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Weak<Connection>>>,
}

/// One client connection: its socket (a duplicate descriptor) and the requests it serves now.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    socket: socket2::Socket,
    busy: AtomicUsize,
    registry: Weak<Connections>,
}

/// A request in progress on its connection, until dropped.
pub struct Busy(Arc<Connection>);

impl Connections {
    /// Registers a connection actix has just accepted (`stream` is its TCP stream); `None` if
    /// it is not one or its descriptor cannot be duplicated (it then simply is not closed
    /// early).
    pub fn register(self: &Arc<Self>, stream: &dyn Any) -> Option<Arc<Connection>> {
        let stream = stream.downcast_ref::<actix_web::rt::net::TcpStream>()?;
        let socket = socket2::SockRef::from(stream).try_clone().ok()?;
        let connection = Arc::new(Connection {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            socket,
            busy: AtomicUsize::new(0),
            registry: Arc::downgrade(self),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(connection.id, Arc::downgrade(&connection));
        }
        Some(connection)
    }

    /// Shuts down every connection that serves no request now; returns how many.
    pub fn close_idle(&self) -> usize {
        let open: Vec<Arc<Connection>> = match self.open.lock() {
            Ok(open) => open.values().filter_map(Weak::upgrade).collect(),
            Err(_) => return 0,
        };
        let mut closed = 0;
        for c in open {
            if c.busy.load(Ordering::SeqCst) == 0 {
                let _ = c.socket.shutdown(std::net::Shutdown::Both);
                closed += 1;
            }
        }
        closed
    }
}

impl Connection {
    /// Marks a request in progress on this connection until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade()
            && let Ok(mut open) = registry.open.lock()
        {
            open.remove(&self.id);
        }
    }
}
