//! A listener for the HTTP API with a cap on open connections, an idle timeout and TLS when
//! configured, so a client cannot hold the port's every socket or keep idle sockets forever.
//!
//! A task accepts sockets: beyond `connections_max` open connections, new ones are closed at
//! once (counted in `hydra_http_connections_refused_total`); each admitted socket's TLS
//! handshake runs on a task of its own (a slow handshake delays no other client), and the
//! finished connections reach axum through a channel. A connection that neither sends nor
//! receives a byte for `idle_timeout` reads as closed.

use crate::metrics::Metrics;
use crate::tls::{Acceptor, ClientStream};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

pub struct Bounded {
    ready: tokio::sync::mpsc::Receiver<(Conn, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

/// Connections whose handshake finished, waiting for axum to take them.
const READY_MAX: usize = 256;

impl Bounded {
    pub fn new(
        listener: TcpListener,
        connections_max: usize,
        idle_timeout: Duration,
        acceptor: Acceptor,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Bounded> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(READY_MAX);
        let slots = Arc::new(Semaphore::new(connections_max));
        tokio::spawn(async move {
            loop {
                let (stream, addr) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics.http_connections_refused.inc();
                    tracing::warn!(
                        "HTTP connection from {addr} refused: {connections_max} connections open (limits.http_connections_max)"
                    );
                    drop(stream);
                    continue;
                };
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(stream) => {
                            let conn = Conn {
                                stream,
                                _slot: slot,
                                idle_timeout,
                                idle: Box::pin(tokio::time::sleep(idle_timeout)),
                            };
                            let _ = tx.send((conn, addr)).await;
                        }
                        Err(e) => tracing::info!("HTTP connection from {addr}: {e}"),
                    }
                });
            }
        });
        Ok(Bounded { ready, local })
    }
}

/// An accepted connection: its slot is given back when it is dropped.
pub struct Conn {
    stream: ClientStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
}

impl Conn {
    fn touch(&mut self) {
        self.idle.as_mut().reset(Instant::now() + self.idle_timeout);
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle for limits.http_idle_timeout_ms",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.touch();
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.check_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Conn, std::net::SocketAddr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task is gone (it never ends on its own): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        Ok(self.local)
    }
}
