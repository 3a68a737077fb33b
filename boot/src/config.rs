//! Reads the configuration file and maps it to what the runtime takes. The file's model and
//! every check on it live in `isobar_tenancy::config` (no V8, tested there); this module reads
//! the file from disk and turns the model into runtime types.

use std::path::Path;

pub use isobar_tenancy::config::{Config, ConfigError};

/// Reads and parses the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
    isobar_tenancy::config::parse(&text, path)
}

/// The isolate budget per core that `[isolates]` sets; pooled isolates get the default heap
/// limit, the one most tenants use.
pub fn isolate_budget(config: &Config) -> runtime::cache::IsolateBudget {
    runtime::cache::IsolateBudget {
        count_max: config.isolates.per_core_max as usize,
        memory_bytes_max: (config.isolates.per_core_heap_mb as usize) << 20,
        pool: config.isolates.pool as usize,
        pool_heap_bytes: runtime::TenantLimits::from(config.default_limits).heap_bytes,
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
