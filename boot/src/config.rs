//! Reads the configuration file and maps it to what the runtime takes. The file's model and
//! every check on it live in `isobar_tenancy::config` (no V8, tested there); this module reads
//! the file (and the certificates it names) from disk and turns the model into runtime types.

use std::path::Path;
use std::sync::Arc;

use isobar_tenancy::config::{CertificateConfig, CertificateFile};
pub use isobar_tenancy::config::{Config, ConfigError};
use netstack::TlsServerConfig;
use netstack::tls::{CertKeyPem, PEM_FILE_BYTES_MAX, TlsConfigError};

/// Reads and parses the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
    isobar_tenancy::config::parse(&text, path)
}

/// Reads the certificates and keys of `[server.tls]` and builds the TLS configuration the
/// cores serve (`None` without `[server.tls]`). A file that cannot be read or used is an error
/// at its key in the file: `isobar.toml:9:12: server.tls.certificates.key: cannot read ...`.
pub fn tls_server_config(config: &Config) -> Result<Option<Arc<TlsServerConfig>>, ConfigError> {
    let Some(tls) = &config.server.tls else { return Ok(None) };
    let mut files = Vec::with_capacity(tls.certificates.len());
    for certificate in &tls.certificates {
        let read = |path: &Path, file| {
            kernel_shim::file::read_bounded(path, PEM_FILE_BYTES_MAX)
                .map_err(|error| ConfigError::certificate_file(config, certificate, file, &error))
        };
        let names = (certificate.cert.display().to_string(), certificate.key.display().to_string());
        files.push((
            names,
            read(&certificate.cert, CertificateFile::Cert)?,
            read(&certificate.key, CertificateFile::Key)?,
        ));
    }
    let pems: Vec<CertKeyPem<'_>> = files
        .iter()
        .map(|((source_name, key_source_name), cert_chain, key)| CertKeyPem {
            source_name,
            key_source_name,
            cert_chain,
            key,
        })
        .collect();
    netstack::tls::server_config(&pems).map(Some).map_err(|error| {
        let (certificate, file) = blame(&tls.certificates, &error);
        ConfigError::certificate(config, certificate, file, error.to_string())
    })
}

/// The certificate (and which of its files) a TLS configuration error is about: the one its
/// source names, or the first.
fn blame<'c>(
    certificates: &'c [CertificateConfig],
    error: &TlsConfigError,
) -> (&'c CertificateConfig, CertificateFile) {
    let source = error.source_name();
    for certificate in certificates {
        if source.as_deref() == Some(certificate.key.display().to_string().as_str()) {
            return (certificate, CertificateFile::Key);
        }
        if source.as_deref() == Some(certificate.cert.display().to_string().as_str()) {
            return (certificate, CertificateFile::Cert);
        }
    }
    // The parser makes sure there is at least one certificate.
    (&certificates[0], CertificateFile::Cert)
}

/// The isolate budget per core that `[isolates]` sets; pooled isolates get the default heap
/// limit, the one most tenants use.
pub fn isolate_budget(config: &Config) -> runtime::cache::IsolateBudget {
    runtime::cache::IsolateBudget {
        count_max: config.isolates.per_core_max as usize,
        memory_bytes_max: (config.isolates.per_core_heap_mb as usize) << 20,
        pool: config.isolates.pool as usize,
        pool_heap_bytes: runtime::TenantLimits::from(config.default_limits).heap_bytes,
        ..runtime::cache::IsolateBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid tenant.
    const TENANT: &str = "[[tenant]]\nname = \"t\"\nscript = \"t.js\"\nroutes = [\"*\"]\n";

    #[test]
    fn unreadable_file() {
        let error = load(Path::new("/nonexistent/isobar.toml")).unwrap_err();
        assert_eq!(error.to_string(), "cannot read /nonexistent/isobar.toml: No such file or directory");
        assert!(error.problem().is_none());
    }

    #[test]
    fn load_reads_and_parses_a_file() {
        let directory = std::env::temp_dir().join(format!("isobar-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("isobar.toml");
        std::fs::write(&path, TENANT).unwrap();
        let config = load(&path);
        std::fs::remove_dir_all(&directory).unwrap();
        let config = config.unwrap();
        assert_eq!(config.tenants[0].script, directory.join("t.js"));
    }

    #[test]
    fn unusable_certificate_files_are_errors_at_their_keys() {
        let directory = std::env::temp_dir().join(format!("isobar-config-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("not-a-cert.pem"), "hello\n").unwrap();
        std::fs::write(directory.join("k.pem"), "hello\n").unwrap();
        std::fs::write(directory.join("c.pem"), "").unwrap();
        let text = format!(
            "[server.tls]\ncertificates = [\n  {{ cert = \"not-a-cert.pem\", key = \"k.pem\" }},\n  {{ cert = \"c.pem\", key = \"missing.key\" }},\n]\n{TENANT}"
        );
        let path = directory.join("isobar.toml");
        let config = isobar_tenancy::config::parse(&text, &path).unwrap();
        let unreadable = tls_server_config(&config).unwrap_err().to_string();
        std::fs::write(directory.join("missing.key"), "").unwrap();
        let unusable = tls_server_config(&config).unwrap_err().to_string();
        std::fs::remove_dir_all(&directory).unwrap();
        // The first file that cannot be read, at its value.
        assert!(
            unreadable.ends_with(&format!(
                "isobar.toml:4:27: server.tls.certificates.key: cannot read {}: No such file or directory",
                directory.join("missing.key").display()
            )),
            "{unreadable}"
        );
        // Read, but not a certificate: the first pair, at its `cert` value, naming the file.
        assert!(
            unusable.ends_with(&format!(
                "isobar.toml:3:12: server.tls.certificates.cert: {} holds no certificate",
                directory.join("not-a-cert.pem").display()
            )),
            "{unusable}"
        );
        let plain = isobar_tenancy::config::parse(TENANT, &path).unwrap();
        assert!(tls_server_config(&plain).unwrap().is_none());
    }

    #[test]
    fn the_budget_follows_isolates_and_the_default_heap() {
        let text = format!(
            "[isolates]\nper_core_max = 7\nper_core_heap_mb = 512\npool = 2\n[defaults.limits]\nheap_mb = 64\n{TENANT}"
        );
        let config = isobar_tenancy::config::parse(&text, Path::new("isobar.toml")).unwrap();
        let budget = isolate_budget(&config);
        assert_eq!((budget.count_max, budget.memory_bytes_max, budget.pool), (7, 512 << 20, 2));
        assert_eq!(budget.pool_heap_bytes, 64 << 20);
    }
}
