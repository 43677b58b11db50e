//! [`client_config`]: one rustls client configuration for every backend with TLS (feature
//! `tls`): the system's root certificates, the extra roots and the client certificate of a
//! [`TlsOptions`], with the `ring` provider; and [`is_certificate_error`], which tells a
//! certificate that does not verify (not temporary: [`ErrorKind::Auth`](crate::ErrorKind::Auth))
//! from other TLS trouble.

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

/// Whether `error` (or one of its sources) says a certificate was refused: the server's
/// certificate did not verify against our roots (unknown issuer, wrong name, expired …), the
/// server presented none, or the server refused ours (a `bad_certificate`, `unknown_ca`,
/// `certificate_required` … alert). Retrying the same settings cannot help, so adapters
/// classify these as [`ErrorKind::Auth`](crate::ErrorKind::Auth).
///
/// It looks for a [`rustls::Error`] in the source chain, also inside [`std::io::Error`]s, and,
/// for client libraries that flatten errors to text, for rustls's names of those errors.
///
/// ```
/// use pubsub_core::adapter::tls::{is_certificate_error, rustls};
/// let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
/// let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
/// assert!(is_certificate_error(&io));
/// let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
/// assert!(!is_certificate_error(&reset));
/// ```
pub fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(e) = error.downcast_ref::<rustls::Error>() {
            return refused(e);
        }
        if let Some(e) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return refused(e);
        }
        let text = format!("{error} {error:?}");
        if REFUSALS.iter().any(|mark| text.contains(mark)) {
            return true;
        }
        next = error.source();
    }
    false
}

/// rustls's `Debug` names of the refusals [`refused`] accepts, for errors only kept as text.
const REFUSALS: &[&str] = &[
    "InvalidCertificate(",
    "NoCertificatesPresented",
    "AlertReceived(BadCertificate)",
    "AlertReceived(UnsupportedCertificate)",
    "AlertReceived(CertificateRevoked)",
    "AlertReceived(CertificateExpired)",
    "AlertReceived(CertificateUnknown)",
    "AlertReceived(UnknownCA)",
    "AlertReceived(CertificateRequired)",
    "AlertReceived(AccessDenied)",
];

fn refused(error: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    match error {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
                | A::AccessDenied
        ),
        _ => false,
    }
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

    #[test]
    fn certificate_refusals_are_recognised() {
        use rustls::{AlertDescription, CertificateError};
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let refusals = [
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            rustls::Error::NoCertificatesPresented,
        ];
        for e in refusals {
            let text = format!("{e:?}");
            assert!(is_certificate_error(&io(e)), "{text}");
            let flat = std::io::Error::other(text.clone());
            assert!(is_certificate_error(&flat), "flattened: {text}");
        }
        let other = [
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ];
        for e in other {
            assert!(!is_certificate_error(&io(e)));
        }
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!is_certificate_error(&reset));
    }

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
