//! What a tenant is made from, wherever it comes from (the configuration file or the admin API):
//! its name and the rule every name follows, its script's format, its routes, bindings and
//! limits. The runtime compiles [`TenantSettings`] into a tenant version; nothing here touches
//! V8 or reads the disk.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::limits::TenantLimits;
use crate::routes::Route;

/// How a script is meant to be run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScriptFormat {
    /// ES module if the script uses `import`/`export`, else a classic service-worker script.
    #[default]
    Auto,
    /// `export default { fetch(request, env, ctx) }`
    Module,
    /// `addEventListener('fetch', event => event.respondWith(...))`
    ServiceWorker,
}

impl ScriptFormat {
    /// The names operators write, in the order messages list them.
    pub const NAMES: &'static str = "auto, module, service-worker";

    /// `auto`, `module` or `service-worker`.
    pub fn parse(name: &str) -> Option<ScriptFormat> {
        match name {
            "auto" => Some(ScriptFormat::Auto),
            "module" => Some(ScriptFormat::Module),
            "service-worker" => Some(ScriptFormat::ServiceWorker),
            _ => None,
        }
    }

    /// The name [`ScriptFormat::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            ScriptFormat::Auto => "auto",
            ScriptFormat::Module => "module",
            ScriptFormat::ServiceWorker => "service-worker",
        }
    }
}

/// What a tenant name must be, written to follow "must be": names appear in logs, metrics
/// labels, URLs and file names, so they are kept to characters that are safe in all of them.
pub const TENANT_NAME_RULE: &str = "1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter or a digit";

/// Whether `name` follows [`TENANT_NAME_RULE`]: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn is_tenant_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A KV namespace on `env`: `env.<binding>` is a `KVNamespace` over the tenant's namespace
/// `namespace` (namespaces are per tenant: two tenants' namespaces of the same name are apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvBinding {
    pub binding: String,
    pub namespace: String,
}

/// What a binding name on `env` must be, written to follow "must be".
pub const BINDING_NAME_RULE: &str =
    "a JavaScript identifier of 1 to 255 characters of A-Z, a-z, 0-9, `_` and `$`, not starting with a digit";

/// Whether `name` follows [`BINDING_NAME_RULE`].
pub fn is_binding_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$');
    first_ok && name.len() <= 255 && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// What a KV namespace name must be (it is part of the store's keys and of metrics labels).
pub const NAMESPACE_NAME_RULE: &str = "1 to 255 characters of A-Z, a-z, 0-9, `_`, `-`, `.` and `:`";

/// Whether `name` follows [`NAMESPACE_NAME_RULE`].
pub fn is_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// What a tenant is made from (config file or admin API).
#[derive(Clone)]
pub struct TenantSettings {
    pub name: String,
    /// Where the script came from: its path (imports resolve beside it), or a pseudo path for a
    /// script uploaded through the admin API.
    pub path: PathBuf,
    pub source: String,
    pub format: ScriptFormat,
    pub routes: Vec<Route>,
    pub vars: BTreeMap<String, String>,
    /// Never printed: `Debug` shows the names only.
    pub secrets: BTreeMap<String, String>,
    pub limits: TenantLimits,
    /// KV namespaces on `env`; their binding names are unique among vars, secrets and bindings.
    pub kv: Vec<KvBinding>,
    /// Service bindings on `env`: binding name -> the tenant its `fetch()` calls, in the same
    /// process and on the same core, with no socket. Names are unique among all bindings.
    pub services: BTreeMap<String, String>,
    /// Whether imports may be read from disk while bundling (config tenants: yes; uploads: no).
    pub read_disk: bool,
    /// Cron Triggers: valid expressions (see [`crate::cron`]), firing the module's `scheduled()`.
    pub crons: Vec<String>,
}

impl fmt::Debug for TenantSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSettings")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("source_bytes", &self.source.len())
            .field("format", &self.format)
            .field("routes", &self.routes.iter().map(Route::to_string).collect::<Vec<_>>())
            .field("vars", &self.vars)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .field("kv", &self.kv)
            .field("services", &self.services)
            .field("read_disk", &self.read_disk)
            .field("crons", &self.crons)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        for name in ["shop", "a-b_1", "0", "a", &"a".repeat(63)] {
            assert!(is_tenant_name(name), "{name:?}");
        }
        for name in ["", "Shop", "-a", "_a", "a/b", "a b", "ä", "a.b", &"a".repeat(64)] {
            assert!(!is_tenant_name(name), "{name:?}");
        }
    }

    #[test]
    fn format_names_round_trip() {
        for format in [ScriptFormat::Auto, ScriptFormat::Module, ScriptFormat::ServiceWorker] {
            assert_eq!(ScriptFormat::parse(format.name()), Some(format));
            assert!(ScriptFormat::NAMES.contains(format.name()));
        }
        assert_eq!(ScriptFormat::parse("esm"), None);
    }

    #[test]
    fn debug_never_shows_secret_values_or_the_script() {
        let settings = TenantSettings {
            name: "t".into(),
            path: "t.js".into(),
            source: "export default {}".into(),
            format: ScriptFormat::Auto,
            routes: vec![Route::parse("*").unwrap()],
            vars: BTreeMap::from([("GREETING".into(), "hello".into())]),
            secrets: BTreeMap::from([("KEY".into(), "hunter2".into())]),
            limits: TenantLimits::default(),
            kv: Vec::new(),
            services: BTreeMap::new(),
            read_disk: false,
            crons: Vec::new(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("export default"), "{shown}");
        assert!(shown.contains("KEY") && shown.contains("hello"), "{shown}");
    }
}
