//! One side of a persistent control connection: a writer shared by the
//! threads that send on it, and accept loops that authenticate every
//! connection before handing it on.

use ember_core::auth::{accept_tcp, Secret};
use ember_core::codec::send;
use ember_core::{EmberError, Result};
use serde::Serialize;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The sending half of a connection.
pub struct Conn {
    writer: Mutex<TcpStream>,
    /// The peer's address, for messages.
    pub peer: String,
}

impl Conn {
    /// Wraps a clone of `stream` for sending.
    pub fn new(stream: &TcpStream) -> Result<Arc<Conn>> {
        let writer = stream
            .try_clone()
            .map_err(|e| EmberError::Network(e.to_string()))?;
        // A peer that stops reading must not block its senders for long.
        let _ = writer.set_write_timeout(Some(std::time::Duration::from_secs(10)));
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        Ok(Arc::new(Conn {
            writer: Mutex::new(writer),
            peer,
        }))
    }

    /// Sends one message.
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        send(
            &mut *self.writer.lock().unwrap_or_else(|p| p.into_inner()),
            msg,
        )
    }

    /// Closes both directions (the reader thread then ends).
    pub fn shutdown(&self) {
        let _ = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown(Shutdown::Both);
    }
}

/// Accepts connections on `listener` until `stopping`, authenticating each
/// on its own thread (a slow or hostile peer holds only its own thread)
/// and handing authenticated ones to `handle`.
pub fn accept_loop(
    name: &str,
    listener: TcpListener,
    secret: Option<Secret>,
    stopping: Arc<AtomicBool>,
    handle: Arc<dyn Fn(TcpStream) + Send + Sync>,
) -> Result<()> {
    let thread_name = format!("{name}-conn");
    std::thread::Builder::new()
        .name(format!("{name}-acceptor"))
        .spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let (secret, handle) = (secret.clone(), handle.clone());
                let _ = std::thread::Builder::new()
                    .name(thread_name.clone())
                    .spawn(move || {
                        let _ = conn.set_nodelay(true);
                        match accept_tcp(&mut conn, secret.as_ref()) {
                            Ok(()) => handle(conn),
                            Err(e) => tracing::warn!(%e, "refused a connection"),
                        }
                    });
            }
        })
        .map_err(|e| EmberError::Network(format!("start {name} acceptor: {e}")))?;
    Ok(())
}
