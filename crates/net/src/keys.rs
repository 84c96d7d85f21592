//! Certificates for trying mutual TLS out: a CA, and a server and a client certificate it
//! signs (`splitlm keys`). For production, use your organisation's CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

use crate::NetError;

/// What [`generate`] makes.
#[derive(Debug, Clone)]
pub struct KeyOptions {
    /// Names and addresses the server certificate is valid for.
    pub hosts: Vec<String>,
    /// The client certificate's common name: the identity the model party records.
    pub client_name: String,
    /// Validity, as (first year, year after the last); default: this year and the next.
    pub years: (i32, i32),
}

impl Default for KeyOptions {
    fn default() -> Self {
        let year = current_year();
        Self {
            hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            client_name: "splitlm data party".into(),
            years: (year, year + 2),
        }
    }
}

/// The year now (UTC), from the system clock.
fn current_year() -> i32 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    // Days to a civil year (Howard Hinnant's algorithm, years only).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let year = yoe + era * 400 + i64::from(mp >= 10);
    year as i32
}

/// The five files [`generate`] writes into a directory.
pub const FILES: [&str; 5] = [
    "ca.pem",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
];

fn failed(detail: impl std::fmt::Display) -> NetError {
    NetError::Tls {
        what: "generating certificates".into(),
        detail: detail.to_string(),
    }
}

/// Makes a CA, a server certificate for `options.hosts` and a client certificate named
/// `options.client_name`, and writes them into `dir` as [`FILES`] (keys readable by the owner
/// only). Refuses to replace existing files unless `force`.
pub fn generate(dir: &Path, options: &KeyOptions, force: bool) -> Result<Vec<PathBuf>, NetError> {
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    if !force && let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(failed(format!(
            "{} exists; pass --force to replace the keys in {}",
            existing.display(),
            dir.display()
        )));
    }
    let ca = Authority::new(options.years)?;
    let (server_pem, server_key) = ca.server(&options.hosts, options.years)?;
    let (client_pem, client_key) = ca.client(&options.client_name, options.years)?;

    std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let contents = [ca.pem(), server_pem, server_key, client_pem, client_key];
    for (path, text) in paths.iter().zip(contents) {
        write_private(path, text.as_bytes())?;
    }
    Ok(paths)
}

/// A certificate authority that issues server and client certificates (PEM).
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn validity(params: &mut CertificateParams, (from, until): (i32, i32)) {
    params.not_before = date_time_ymd(from, 1, 1);
    params.not_after = date_time_ymd(until, 1, 1);
}

impl Authority {
    /// A new CA valid from the first of January of `years.0` to that of `years.1`.
    pub fn new(years: (i32, i32)) -> Result<Self, NetError> {
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "splitlm test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, years);
        let pem = params.self_signed(&key).map_err(failed)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The CA's certificate.
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    /// A server certificate for `hosts` and its key.
    pub fn server(
        &self,
        hosts: &[String],
        years: (i32, i32),
    ) -> Result<(String, String), NetError> {
        self.issue(
            hosts.to_vec(),
            "splitlm model party",
            ExtendedKeyUsagePurpose::ServerAuth,
            years,
        )
    }

    /// A client certificate whose subject is `CN=<name>`, and its key.
    pub fn client(&self, name: &str, years: (i32, i32)) -> Result<(String, String), NetError> {
        self.issue(Vec::new(), name, ExtendedKeyUsagePurpose::ClientAuth, years)
    }

    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
        years: (i32, i32),
    ) -> Result<(String, String), NetError> {
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::new(names).map_err(failed)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        validity(&mut params, years);
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes `bytes` to `path` through a temporary file, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    use std::io::Write;
    let fail = |e: std::io::Error| failed(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The subject of a DER certificate, as `CN=…, O=…` (what records name a client by).
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_year_is_plausible() {
        let year = current_year();
        assert!((2024..2200).contains(&year), "{year}");
    }

    #[test]
    fn writes_five_files_and_refuses_to_overwrite_them() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(dir.path(), &KeyOptions::default(), false).unwrap();
        assert_eq!(written.len(), 5);
        let client = std::fs::read_to_string(dir.path().join("client.pem")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(client.as_bytes()).unwrap();
        assert_eq!(
            subject_of(&pem.contents).as_deref(),
            Some("CN=splitlm data party")
        );
        let again = generate(dir.path(), &KeyOptions::default(), false).unwrap_err();
        assert!(again.to_string().contains("--force"), "{again}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("client.pem")).unwrap(),
            client,
            "a refused run leaves the keys as they were"
        );
        generate(dir.path(), &KeyOptions::default(), true).unwrap();
    }
}
