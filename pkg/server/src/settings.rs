//! `settings.v1.SettingsService`: small named values per tenant that UIs keep
//! on the server (Grafana's Profiles Drilldown stores its plugin settings
//! here and refuses to draw a flame graph when `Get` fails).
//!
//! A tenant's settings are one JSON document in object storage,
//! `<tenant>/settings.json` (`{"version": 1, "settings": [{"name", "value",
//! "modifiedAt"}]}`), so they survive restarts and every querier of a cluster
//! sees the same. A `Set` reads, changes and writes the document under a
//! per-process lock; across processes the last write wins, and a `Set` whose
//! `modifiedAt` is older than the stored one is refused (Pyroscope's rule),
//! so a stale UI cannot undo a newer change.
//!
//! Bounds: a name is at most [`MAX_NAME_BYTES`], a value at most
//! [`MAX_VALUE_BYTES`], and a tenant keeps at most [`MAX_SETTINGS`] names.

use std::sync::Arc;

use ember_proto::{
    Tenant,
    error::Code,
    settings::v1::{
        GetSettingsRequest, GetSettingsResponse, SetSettingsRequest, SetSettingsResponse, Setting,
        settings_service_server::SettingsService,
    },
};
use ember_time::SharedClock;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};
use tracing::info;

/// Longest setting name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest setting value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most settings one tenant keeps.
pub const MAX_SETTINGS: usize = 256;
/// The version of the stored document.
const FORMAT_VERSION: u32 = 1;

/// The stored document of one tenant.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    settings: Vec<Stored>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    name: String,
    value: String,
    #[serde(rename = "modifiedAt")]
    modified_at: i64,
}

impl From<Stored> for Setting {
    fn from(s: Stored) -> Self {
        Setting {
            name: s.name,
            value: s.value,
            modified_at: s.modified_at,
        }
    }
}

/// The settings service over one object store.
#[derive(Debug, Clone)]
pub struct Settings {
    store: Arc<dyn ObjectStore>,
    clock: SharedClock,
    /// Serializes read-modify-write cycles of this process.
    lock: Arc<Mutex<()>>,
}

fn path(tenant: &str) -> Path {
    Path::from(format!("{tenant}/settings.json"))
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Code::Internal.status(format!("{what} settings: {e}"))
}

impl Settings {
    /// Returns the service storing in `store`; `clock` stamps a `Set` that
    /// carries no `modifiedAt`.
    pub fn new(store: Arc<dyn ObjectStore>, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            lock: Arc::new(Mutex::new(())),
        }
    }

    async fn load(&self, tenant: &str) -> Result<Document, Status> {
        let bytes = match self.store.get(&path(tenant)).await {
            Ok(r) => r.bytes().await.map_err(|e| internal("reading", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(Document::default()),
            Err(e) => return Err(internal("reading", e)),
        };
        let doc: Document =
            serde_json::from_slice(&bytes).map_err(|e| internal("decoding the stored", e))?;
        if doc.version > FORMAT_VERSION {
            return Err(internal(
                "reading",
                format!("format version {} is newer than this binary's", doc.version),
            ));
        }
        Ok(doc)
    }

    /// Returns the tenant's settings, ordered by name.
    pub async fn all(&self, tenant: &str) -> Result<Vec<Setting>, Status> {
        let mut doc = self.load(tenant).await?;
        doc.settings.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(doc.settings.into_iter().map(Setting::from).collect())
    }

    /// Stores `setting`, returning what is stored.
    pub async fn store(&self, tenant: &str, setting: Setting) -> Result<Setting, Status> {
        let bad = |m: String| Code::BadRequest.status(m);
        if setting.name.is_empty() {
            return Err(bad("a setting needs a name".into()));
        }
        if setting.name.len() > MAX_NAME_BYTES {
            return Err(bad(format!(
                "setting name is {} bytes, more than the {MAX_NAME_BYTES} allowed",
                setting.name.len()
            )));
        }
        if setting.value.len() > MAX_VALUE_BYTES {
            return Err(Code::TooLarge.status(format!(
                "setting {:?} is {} bytes, more than the {MAX_VALUE_BYTES} allowed",
                setting.name,
                setting.value.len()
            )));
        }
        let modified_at = if setting.modified_at > 0 {
            setting.modified_at
        } else {
            self.clock.now_millis()
        };
        let _guard = self.lock.lock().await;
        let mut doc = self.load(tenant).await?;
        let stored = Stored {
            name: setting.name.clone(),
            value: setting.value,
            modified_at,
        };
        let count = doc.settings.len();
        match doc.settings.iter_mut().find(|s| s.name == setting.name) {
            Some(existing) if existing.modified_at > modified_at => {
                return Err(bad(format!(
                    "setting {:?} was changed at {} (unix ms), after this change's modifiedAt {modified_at}: reload and retry",
                    existing.name, existing.modified_at
                )));
            }
            Some(existing) => *existing = stored.clone(),
            None if count >= MAX_SETTINGS => {
                return Err(Code::TooLarge.status(format!(
                    "the tenant already has {MAX_SETTINGS} settings, the most allowed"
                )));
            }
            None => doc.settings.push(stored.clone()),
        }
        doc.version = FORMAT_VERSION;
        let bytes = serde_json::to_vec(&doc).map_err(|e| internal("encoding", e))?;
        self.store
            .put(&path(tenant), PutPayload::from(bytes))
            .await
            .map_err(|e| internal("writing", e))?;
        info!(tenant, name = %stored.name, "setting stored");
        Ok(stored.into())
    }
}

#[tonic::async_trait]
impl SettingsService for Settings {
    async fn get(
        &self,
        request: Request<GetSettingsRequest>,
    ) -> Result<Response<GetSettingsResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        Ok(Response::new(GetSettingsResponse {
            settings: self.all(&tenant).await?,
        }))
    }

    async fn set(
        &self,
        request: Request<SetSettingsRequest>,
    ) -> Result<Response<SetSettingsResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let setting = request
            .into_inner()
            .setting
            .ok_or_else(|| Code::BadRequest.status("a Set needs a setting"))?;
        Ok(Response::new(SetSettingsResponse {
            setting: Some(self.store(&tenant, setting).await?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_time::ManualClock;
    use object_store::memory::InMemory;

    fn service(store: Arc<dyn ObjectStore>) -> Settings {
        Settings::new(
            store,
            Arc::new(ManualClock::new(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(5_000),
            )),
        )
    }

    fn setting(name: &str, value: &str, modified_at: i64) -> Setting {
        Setting {
            name: name.into(),
            value: value.into(),
            modified_at,
        }
    }

    #[tokio::test]
    async fn stores_per_tenant_and_survives_a_new_service() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let s = service(store.clone());
        assert!(s.all("a").await.unwrap().is_empty());
        let stored = s
            .store("a", setting("pluginSettings", "{\"x\":1}", 0))
            .await
            .unwrap();
        assert_eq!(stored.modified_at, 5_000, "stamped by the clock");
        s.store("a", setting("other", "v", 10)).await.unwrap();
        s.store("b", setting("pluginSettings", "b", 10))
            .await
            .unwrap();
        // A new service over the same store: as after a restart.
        let again = service(store);
        let names: Vec<(String, String)> = again
            .all("a")
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect();
        assert_eq!(
            names,
            vec![
                ("other".into(), "v".into()),
                ("pluginSettings".into(), "{\"x\":1}".into())
            ]
        );
        assert_eq!(again.all("b").await.unwrap()[0].value, "b");
    }

    #[tokio::test]
    async fn refuses_stale_oversized_and_nameless_settings() {
        let s = service(Arc::new(InMemory::new()));
        s.store("a", setting("n", "new", 100)).await.unwrap();
        let stale = s.store("a", setting("n", "old", 50)).await.unwrap_err();
        assert!(stale.message().contains("reload"), "{stale}");
        assert_eq!(s.all("a").await.unwrap()[0].value, "new");
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let err = s.store("a", setting("n", &big, 200)).await.unwrap_err();
        assert_eq!(Code::of(&err), Code::TooLarge);
        let err = s.store("a", setting("", "v", 200)).await.unwrap_err();
        assert_eq!(Code::of(&err), Code::BadRequest);
        for i in 1..MAX_SETTINGS {
            s.store("a", setting(&format!("k{i}"), "v", 1))
                .await
                .unwrap();
        }
        let err = s
            .store("a", setting("one-too-many", "v", 1))
            .await
            .unwrap_err();
        assert_eq!(Code::of(&err), Code::TooLarge);
    }
}
