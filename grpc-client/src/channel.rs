//! [`ChannelConfig`]: dialling a tonic [`Channel`] the way every Meridian client does.
//!
//! An `https://` URL gets TLS: the server must chain to the given CA (PEM), or to
//! the web PKI roots without one, and a client identity is presented when given
//! (mutual TLS between Raft replicas). An `http://` URL is dialled in plain HTTP/2;
//! [`check_url`] is the rule for URLs an operator passes: plain HTTP only to a
//! loopback address, where nothing on the network can read or change it.
//!
//! Defaults: 5 s connect timeout, HTTP/2 keep-alive pings every 10 s, the
//! connection given up when one is not answered within 20 s.
//!
//! Invariant: a bad URL or unusable TLS material is a [`ChannelError`], never a
//! panic.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Why a channel could not be set up or connected.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The URL is not usable.
    #[error("invalid URL {url:?}: {source}")]
    Url {
        /// The URL given.
        url: String,
        /// What was wrong.
        source: tonic::transport::Error,
    },
    /// The TLS material is not usable.
    #[error("TLS settings: {0}")]
    Tls(tonic::transport::Error),
    /// The connection could not be established.
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
}

/// How to dial one server.
#[derive(Clone)]
pub struct ChannelConfig {
    url: String,
    ca_pem: Option<Vec<u8>>,
    identity: Option<Identity>,
    connect_timeout: Duration,
    keep_alive_interval: Duration,
    keep_alive_timeout: Duration,
    tcp_nodelay: bool,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity holds a private key: never in logs.
        f.debug_struct("ChannelConfig")
            .field("url", &self.url)
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl ChannelConfig {
    /// Dialling `url` with the defaults (web PKI roots for `https://`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_pem: None,
            identity: None,
            connect_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(20),
            tcp_nodelay: true,
        }
    }

    /// Trusts the CA in `ca_pem` instead of the web PKI roots (`None` keeps the roots).
    pub fn trust(mut self, ca_pem: Option<impl AsRef<[u8]>>) -> Self {
        self.ca_pem = ca_pem.map(|pem| pem.as_ref().to_vec());
        self
    }

    /// Presents the certificate chain and key (PEM) for mutual TLS.
    pub fn identity(mut self, cert_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        self.identity = Some(Identity::from_pem(cert_pem, key_pem));
        self
    }

    /// How long a TCP connect (and TLS handshake) may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive: a ping every `interval`, the connection dropped when one
    /// is not answered within `timeout`.
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }

    /// The URL dialled.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The tonic endpoint, with TLS for an `https://` URL.
    ///
    /// # Errors
    /// [`ChannelError::Url`] or [`ChannelError::Tls`].
    pub fn endpoint(&self) -> Result<Endpoint, ChannelError> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|source| ChannelError::Url {
                url: self.url.clone(),
                source,
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(self.tcp_nodelay)
            .http2_keep_alive_interval(self.keep_alive_interval)
            .keep_alive_timeout(self.keep_alive_timeout);
        if self.url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &self.ca_pem {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
                None => tls.with_webpki_roots(),
            };
            if let Some(identity) = &self.identity {
                tls = tls.identity(identity.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(ChannelError::Tls)?;
        }
        Ok(endpoint)
    }

    /// Connects now.
    ///
    /// # Errors
    /// As [`ChannelConfig::endpoint`], and [`ChannelError::Connect`].
    pub async fn connect(&self) -> Result<Channel, ChannelError> {
        self.endpoint()?
            .connect()
            .await
            .map_err(|source| ChannelError::Connect {
                url: self.url.clone(),
                source,
            })
    }

    /// A channel that connects on first use (and reconnects after a failure).
    ///
    /// # Errors
    /// As [`ChannelConfig::endpoint`].
    pub fn connect_lazy(&self) -> Result<Channel, ChannelError> {
        Ok(self.endpoint()?.connect_lazy())
    }
}

/// Checks a server URL an operator gave: `https://`, or `http://` to a loopback
/// address (`localhost`, `127.0.0.0/8`, `::1`). `Err` says why not.
///
/// # Errors
/// The reason, for the caller to prefix with the flag that carried the URL.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err("expected an http:// or https:// URL");
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.rsplit_once(':') {
        Some((h, _)) => h,
        None => host_port,
    };
    if is_loopback_host(host) {
        Ok(())
    } else {
        Err("plain http:// is only accepted for loopback addresses; use https:// with a CA")
    }
}

/// Whether `host` (a name or an IP, IPv6 with or without brackets) is loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_the_reason_for_a_refused_url() {
        let loopback = ["localhost", "127.0.0.1", "127.9.8.7", "::1", "[::1]"];
        assert!(loopback.iter().all(|h| is_loopback_host(h)), "{loopback:?}");
        let remote = ["10.0.0.1", "cp.example", "localhost.example", "[::2]", ""];
        assert!(!remote.iter().any(|h| is_loopback_host(h)), "{remote:?}");
        // The URL's path and port do not count; the scheme does.
        assert_eq!(check_url("http://127.1.2.3:5678/path"), Ok(()));
        assert_eq!(
            check_url("ftp://x"),
            Err("expected an http:// or https:// URL")
        );
        assert!(check_url("http://localhost.example:1").is_err_and(|why| why.contains("loopback")));
    }

    #[tokio::test]
    async fn bad_urls_and_refused_connections_are_errors() {
        let bad = ChannelConfig::new("not a url").endpoint();
        assert!(matches!(bad, Err(ChannelError::Url { .. })), "{bad:?}");
        // A port nothing listens on: bind one, note it, close it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let refused = ChannelConfig::new(format!("http://{addr}"))
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await;
        assert!(
            matches!(refused, Err(ChannelError::Connect { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn https_gets_tls_and_http_does_not() {
        assert!(
            ChannelConfig::new("https://cp.example:5678")
                .endpoint()
                .is_ok()
        );
        assert!(ChannelConfig::new("http://127.0.0.1:1").endpoint().is_ok());
    }
}
