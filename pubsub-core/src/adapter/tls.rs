//! [`client_config`]: one rustls client configuration for every backend with TLS (feature
//! `tls`): the system's root certificates, the extra roots and the client certificate of a
//! [`TlsOptions`], with the `ring` provider.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

pub use rustls;

use crate::{Error, Result, TlsOptions};

/// Builds the rustls client configuration for `tls`, reading the files on the blocking pool
/// (never on the async runtime). Fails with an invalid-configuration error naming the file
/// that cannot be read or used, or when no root certificate at all can be trusted.
pub async fn client_config(tls: &TlsOptions) -> Result<ClientConfig> {
    let tls = tls.clone();
    tokio::task::spawn_blocking(move || build(&tls))
        .await
        .map_err(|e| Error::invalid_config("loading the TLS certificates failed").with_source(e))?
}

fn build(tls: &TlsOptions) -> Result<ClientConfig> {
    let mut store = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!(%error, "skipping a system root certificate");
    }
    store.add_parsable_certificates(system.certs);
    for path in &tls.root_certificates {
        for cert in certificates(path)? {
            store
                .add(cert)
                .map_err(|e| bad_file(path, "is not a usable root certificate", e))?;
        }
    }
    if store.is_empty() {
        return Err(Error::invalid_config(
            "TLS needs root certificates: none could be loaded from the system, and none were given",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid_config("no usable TLS protocol version").with_source(e))?
        .with_root_certificates(store);
    let Some((cert, key)) = &tls.client_certificate else {
        return Ok(builder.with_no_client_auth());
    };
    let pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad_file(key, "holds no private key", e))?;
    builder
        .with_client_auth_cert(certificates(cert)?, key_der)
        .map_err(|e| bad_file(cert, "and its key are not a usable client certificate", e))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_file(path, "is not valid PEM", e))?;
    if certs.is_empty() {
        return Err(bad_file(path, "holds no certificate", "empty"));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad_file(path, "cannot be read", e))
}

fn bad_file(path: &Path, what: &str, source: impl Into<crate::BoxError>) -> Error {
    Error::invalid_config(format!("{} {what}", path.display())).with_source(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A self-signed certificate (valid until 2126) and its key, as root and as client.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBjDCCATOgAwIBAgIUeqVVfv1F6tIuVbx7Z3+5+o9vtxowCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcHVic3ViLW5hdHMtdGVzdDAgFw0yNjExMzAxNTUxMzVaGA8y
MTI2MTEwNjE1NTEzNVowGzEZMBcGA1UEAwwQcHVic3ViLW5hdHMtdGVzdDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABC3Z5ZCNW/dvC/z47zx4Z62HkUeQGRWabWjN
fDiAlNJTDerFEkh6UmF61Yb5/JXld3EGbdytyefsDoBgFbvm1mCjUzBRMB0GA1Ud
DgQWBBTwsJy5E+6GtV8wtdPVDoKCus5vETAfBgNVHSMEGDAWgBTwsJy5E+6GtV8w
tdPVDoKCus5vETAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIGuQ
Pl3pKZpidwN86pwTZZ0dh+g1E8xiQIyODJx48s7VAiAMSMqlwdJ8rmuFKfg3Fzh6
M4Z1AA6E6j+9GNDPSEfJFg==
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgXlx3QqGmteNBKK5C
dQUFLJt+7ujqdjsBCmJ9chp1NDChRANCAAQt2eWQjVv3bwv8+O88eGeth5FHkBkV
mm1ozXw4gJTSUw3qxRJIelJhetWG+fyV5XdxBm3crcnn7A6AYBW75tZg
-----END PRIVATE KEY-----
";

    #[tokio::test]
    async fn files_load_or_fail_typed() {
        let dir = std::env::temp_dir().join(format!("pubsub-core-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key) = (file("cert.pem", CERT), file("key.pem", KEY));
        let junk = file("junk.pem", "not a certificate");
        let broken = file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        );
        let good = TlsOptions::default()
            .with_root_certificate(&cert)
            .with_client_certificate(&cert, &key);
        assert!(client_config(&good).await.is_ok());
        let bad = [
            (&junk, None),
            (&broken, None),
            (&dir.join("missing.pem"), None),
            (&cert, Some((&cert, &cert))),
            (&cert, Some((&key, &key))),
        ];
        for (root, client) in bad {
            let mut tls = TlsOptions::default().with_root_certificate(root);
            if let Some((c, k)) = client {
                tls = tls.with_client_certificate(c, k);
            }
            let e = client_config(&tls).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
