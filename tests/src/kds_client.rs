//! Talking KDS to global directly, as a zone would: a TLS channel that trusts
//! global's CA, and the zone's name and token on a request.

use meridian_grpc_client::ChannelConfig;
use tonic::transport::Channel;

/// A connected channel to global's KDS at `url`, trusting `ca_pem` (dialled as a
/// zone dials, with `meridian-grpc-client`).
pub async fn channel(url: &str, ca_pem: &[u8]) -> Channel {
    ChannelConfig::new(url)
        .trust(Some(ca_pem))
        .connect()
        .await
        .expect("connect to KDS")
}

/// Adds the zone's name and, when given, its token to `request`.
pub fn as_zone<T>(request: &mut tonic::Request<T>, zone: &str, token: Option<&str>) {
    let metadata = request.metadata_mut();
    metadata.insert(
        meridian_proto::metadata::ZONE,
        zone.parse().expect("a zone name is a header value"),
    );
    if let Some(token) = token {
        metadata.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .expect("a token is a header value"),
        );
    }
}
