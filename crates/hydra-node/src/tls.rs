//! TLS on the client ports (HTTP and the Redis protocol), with rustls.
//!
//! `tls.cert` and `tls.key` (PEM) turn TLS on for both ports; `tls.client_ca` (PEM) also
//! demands a client certificate signed by that CA. A handshake must finish within
//! [`HANDSHAKE_TIMEOUT`]. Without TLS, a client port bound beyond loopback needs
//! `listen.allow_plaintext = true` (checked in `config.rs`).
//!
//! [`ClientStream`] is what the front ends read and write: plain TCP or TLS over it.

use anyhow::{Context as _, Result, bail};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client connection: plain TCP, or TLS over it.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Turns accepted sockets into client streams: as they are, or after a TLS handshake.
#[derive(Clone)]
pub struct Acceptor {
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Acceptor {
    pub fn plain() -> Acceptor {
        Acceptor { tls: None }
    }

    /// TLS with the certificate chain and key in `cert` and `key` (PEM); with `client_ca`,
    /// clients must show a certificate it signed.
    pub fn tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Acceptor> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("while reading tls.cert {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("tls.cert {} is not PEM certificates", cert.display()))?;
        if certs.is_empty() {
            bail!("tls.cert {} holds no certificate", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("while reading tls.key {}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca)
                    .with_context(|| format!("while reading tls.client_ca {}", ca.display()))?
                {
                    roots
                        .add(c.with_context(|| format!("tls.client_ca {}", ca.display()))?)
                        .with_context(|| format!("tls.client_ca {}", ca.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .context("the client certificate verifier")?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs, key)
            .context("tls.cert and tls.key do not make a certificate and its key")?;
        Ok(Acceptor {
            tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The stream of an accepted socket: at once in plain text, after the handshake (within
    /// [`HANDSHAKE_TIMEOUT`]) with TLS.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<ClientStream> {
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => Ok(ClientStream::Plain(stream)),
            Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(s) => Ok(ClientStream::Tls(Box::new(s?))),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no TLS handshake within 10 s",
                )),
            },
        }
    }
}
