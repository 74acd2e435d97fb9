//! Certificates made at test time with rcgen: certificate authorities and the server and
//! client certificates they sign, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// The CA certificate.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `localhost` and 127.0.0.1 (server or client) with common name `cn`.
    pub fn issue(&self, cn: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }
}

impl Issued {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key` in place.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// Replaces `dir/<stem>.crt` and `.key` the way secret managers do: written beside,
    /// then renamed over the old files.
    pub fn replace(&self, dir: &Path, stem: &str) {
        for (ext, text) in [("crt", &self.cert_pem), ("key", &self.key_pem)] {
            let tmp = dir.join(format!(".{stem}.{ext}.new"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, dir.join(format!("{stem}.{ext}"))).unwrap();
        }
    }
}

/// A rustls client config trusting `ca_pem`, presenting `client` if given, limited to TLS
/// `versions`, offering `alpn`.
pub fn client_config(
    ca_pem: &str,
    client: Option<&Issued>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => {
            let certs = CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS connection to 127.0.0.1:`port` (server name `localhost`).
pub async fn tls_connect(
    port: u16,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A gRPC channel over one TLS connection made with `config` (ALPN h2), connected now.
pub async fn grpc_channel(
    port: u16,
    config: rustls::ClientConfig,
) -> Result<tonic::transport::Channel, String> {
    let config = std::sync::Arc::new(config);
    let connector = tower::service_fn(move |_: hyper::Uri| {
        let config = (*config).clone();
        async move {
            let tls = tls_connect(port, config).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://localhost:{port}"))
        .unwrap()
        .origin(format!("https://localhost:{port}").parse().unwrap())
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("{e:?}"))
}

/// An HTTP/1.1 connection over TLS, for several requests.
pub struct HttpsConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

impl HttpsConnection {
    pub async fn open(port: u16, config: rustls::ClientConfig) -> Result<HttpsConnection, String> {
        let tls = tls_connect(port, config).await.map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(HttpsConnection { sender })
    }

    /// POSTs `body` to `path`; the status, or why there was none.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<u16, String> {
        let mut req = hyper::Request::post(path).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        Ok(status)
    }
}

/// One POST of OTLP protobuf traces on a new TLS connection made with `config`.
pub async fn https_post_traces(port: u16, config: rustls::ClientConfig) -> Result<u16, String> {
    use prost::Message;
    let mut conn = HttpsConnection::open(port, config).await?;
    conn.post(
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        super::traces_request(7, 2).encode_to_vec(),
    )
    .await
}
