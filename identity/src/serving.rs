//! Control-plane server certificates: the operator's certificate, or a private
//! CA and server certificate generated once into the data directory (the
//! zero-configuration default). Global's KDS server uses it (`kds-*.pem`;
//! zones trust `--global-kds-ca <data-dir>/kds-ca.pem`), and so does a zone
//! CP's data-plane server on a non-loopback address (`dp-*.pem`; proxies trust
//! it with `--zone-cp-ca`).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A PEM certificate chain and key for a control-plane server.
#[derive(Clone)]
pub struct ServingIdentity {
    /// The certificate chain, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The CA clients should trust, when Meridian generated it.
    pub generated_ca: Option<PathBuf>,
}

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum ServingTlsError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating a server certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Only one of certificate and key was given.
    #[error("a TLS certificate and its key go together: give both or neither")]
    Incomplete,
}

impl std::fmt::Debug for ServingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ServingIdentity")
            .field("generated_ca", &self.generated_ca)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, ServingTlsError> {
    std::fs::read_to_string(path).map_err(|source| ServingTlsError::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), ServingTlsError> {
    let io = |source| ServingTlsError::Io {
        action: "writing",
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}

/// Loads the operator's pair, or the generated one from `data_dir`
/// (`<prefix>-ca.pem`, `<prefix>-cert.pem`, `<prefix>-key.pem`), generating it
/// on first use: valid for `localhost`, `127.0.0.1`, `::1` and `extra_names`,
/// with `common_name` as the server's CN.
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    prefix: &str,
    common_name: &str,
    extra_names: &[String],
) -> Result<ServingIdentity, ServingTlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            return Ok(ServingIdentity {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
                generated_ca: None,
            });
        }
        (None, None) => {}
        _ => return Err(ServingTlsError::Incomplete),
    }
    let ca_path = data_dir.join(format!("{prefix}-ca.pem"));
    let cert_path = data_dir.join(format!("{prefix}-cert.pem"));
    let key_path = data_dir.join(format!("{prefix}-key.pem"));
    if cert_path.exists() && key_path.exists() && ca_path.exists() {
        return Ok(ServingIdentity {
            cert_pem: read(&cert_path)?,
            key_pem: read(&key_path)?,
            generated_ca: Some(ca_path),
        });
    }
    std::fs::create_dir_all(data_dir).map_err(|source| ServingTlsError::Io {
        action: "creating",
        path: data_dir.to_owned(),
        source,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{common_name} CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    let mut server_params = CertificateParams::new(names)?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &ca)?;

    write(&ca_path, &ca.pem(), false)?;
    write(&cert_path, &server_cert.pem(), false)?;
    write(&key_path, &server_key.serialize_pem(), true)?;
    tracing::info!(ca = %ca_path.display(), server = common_name, "generated a private CA and server certificate; clients trust the CA");
    Ok(ServingIdentity {
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
        generated_ca: Some(ca_path),
    })
}
