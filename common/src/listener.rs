//! The mTLS listener's accepted connections, bounded: at most
//! [`Limits::max_connections`] open at once (counted from `accept`, so
//! connections that never finish their handshake count too), handshakes
//! timed out, and connections that stop sending anything closed after an
//! idle time, much shorter for a client without a certificate.
//!
//! Every Swarmlet client pings its connections every 5 s (HTTP/2 keep-alive
//! while idle), so a quiet but live peer is never idle here; what the idle
//! timeout closes is a client that connected and went silent, which would
//! otherwise hold a file descriptor for good.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// What a listener's clients may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// Time a TLS handshake may take.
    pub handshake: Duration,
    /// Time without a byte from a client with a certificate.
    pub idle: Duration,
    /// Time without a byte from a client without one (a joining node).
    pub idle_anonymous: Duration,
}

impl Limits {
    /// The defaults: connections up to half the process's file descriptor
    /// limit (between 64 and 16,384), 5 s handshakes, 5 min idle (30 s
    /// without a certificate).
    pub fn for_this_process() -> Self {
        let fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        Limits {
            max_connections: (fds / 2).clamp(64, 16_384) as usize,
            handshake: Duration::from_secs(5),
            idle: Duration::from_secs(300),
            idle_anonymous: Duration::from_secs(30),
        }
    }
}

/// A connection closed when its client sends nothing for too long; it holds
/// one of the listener's connection permits until dropped.
pub struct Guarded<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<S> Guarded<S> {
    /// Guards `inner` with an idle timeout, holding `permit`.
    pub fn new(inner: S, idle: Duration, permit: OwnedSemaphorePermit) -> Self {
        Guarded {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + this.idle;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "idle connection closed",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The services see the TLS connection's own details (the client
/// certificate above all).
impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A guarded TLS connection.
pub type GuardedTls = Guarded<TlsStream<TcpStream>>;

/// Accepted TLS connections of `listener` within `limits`, handshakes done
/// concurrently so that one slow client never holds up the others. Ends
/// when the receiver drops.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: Limits,
) -> ReceiverStream<Result<GuardedTls, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut refused: u64 = 0;
        loop {
            let (tcp, peer): (TcpStream, SocketAddr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                // Closed at once: the cap is what keeps descriptors free.
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        %peer,
                        refused,
                        max = limits.max_connections,
                        "connection limit reached: connections refused"
                    );
                }
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let anonymous = tls.get_ref().1.peer_certificates().is_none();
                        let idle = if anonymous {
                            limits.idle_anonymous
                        } else {
                            limits.idle
                        };
                        let _ = tx.send(Ok(Guarded::new(tls, idle, permit))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "tls handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_closed_a_talking_one_is_not() {
        let permits = Arc::new(Semaphore::new(1));
        let (client, server) = tokio::io::duplex(64);
        let permit = permits.clone().try_acquire_owned().expect("permit");
        let mut guarded = Guarded::new(server, Duration::from_secs(30), permit);
        let mut client = client;
        // Talking every 20 s keeps it open past the idle time.
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(20)).await;
            client.write_all(b"ping").await.expect("write");
            let n = guarded.read(&mut buf).await.expect("read");
            assert_eq!(&buf[..n], b"ping");
        }
        // Silent: closed once the idle time has passed, and its permit freed.
        assert!(
            permits.try_acquire().is_err(),
            "the connection holds the permit"
        );
        let err = guarded.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(guarded);
        assert!(permits.try_acquire().is_ok());
    }

    #[tokio::test]
    async fn connections_above_the_cap_are_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ca = crate::ca::RootCa::create("c").expect("ca");
        let (key, csr) = crate::identity::new_key_and_csr().expect("csr");
        let cert = ca
            .sign_node(
                &csr,
                "n1",
                crate::identity::Role::Manager,
                "c",
                Duration::from_secs(3600),
            )
            .expect("sign");
        let id =
            crate::identity::NodeIdentity::new(ca.cert_pem().into(), cert, key.serialize_pem())
                .expect("identity");
        let slot = crate::tls::CertSlot::new(&id).expect("slot");
        let config = crate::tls::server_config(&id.ca_pem, slot).expect("tls");
        let limits = Limits {
            max_connections: 2,
            handshake: Duration::from_secs(30),
            idle: Duration::from_secs(300),
            idle_anonymous: Duration::from_secs(30),
        };
        let _incoming = tls_incoming(listener, config, limits);
        // Two connections sit in their handshake, holding both permits.
        let _a = TcpStream::connect(addr).await.expect("a");
        let _b = TcpStream::connect(addr).await.expect("b");
        // The third is closed by the server without a byte.
        let mut c = TcpStream::connect(addr).await.expect("c");
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed promptly")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
