//! KDS's TLS identity: the operator's certificate, or one generated into the
//! data directory (see [`meridian_identity::serving`]); zones trust the
//! generated CA with `--global-kds-ca <data-dir>/kds-ca.pem`.

use std::path::Path;

pub use meridian_identity::serving::{ServingIdentity as KdsIdentity, ServingTlsError as TlsError};

/// Loads `--kds-tls-cert`/`--kds-tls-key`, or the pair generated into
/// `data_dir` (`kds-*.pem`), valid for loopback and `extra_names`.
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    extra_names: &[String],
) -> Result<KdsIdentity, TlsError> {
    meridian_identity::serving::load_or_generate(
        cert,
        key,
        data_dir,
        "kds",
        "Meridian global KDS",
        extra_names,
    )
}
