//! A compiled, type-checked plugin: ready to instantiate, with its identity (name, sha256).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::TransformPre;
use super::host_impl::StoreData;

/// A plugin that compiled and matched the world.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) name: Arc<str>,
    pub(crate) sha256: Arc<str>,
    pub(crate) size: usize,
    pub(crate) component: Component,
    pub(crate) pre: TransformPre<StoreData>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// The sha256 of a plugin file, hex: its version.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What `weir plugin inspect` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// The world it was checked against.
    pub world: String,
    /// Size of the file in bytes.
    pub size: usize,
    /// sha256 of the file.
    pub sha256: String,
    /// Exported names.
    pub exports: Vec<String>,
    /// Imported interfaces.
    pub imports: Vec<String>,
}

impl Plugin {
    pub(crate) fn new(
        name: &str,
        bytes: &[u8],
        component: Component,
        pre: TransformPre<StoreData>,
    ) -> Self {
        let sha256 = sha256_hex(bytes);
        Plugin {
            name: name.into(),
            sha256: sha256.into(),
            size: bytes.len(),
            component,
            pre,
        }
    }

    /// The plugin's name (file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the plugin file, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The first 12 hex digits of the sha256, used as the version label.
    pub fn version(&self) -> &str {
        &self.sha256[..12.min(self.sha256.len())]
    }

    /// World, exports, imports, size and hash.
    pub fn info(&self) -> PluginInfo {
        let ty = self.component.component_type();
        let engine = self.component.engine();
        PluginInfo {
            name: self.name.to_string(),
            world: format!("weir:transform/transform@{}", super::WORLD_VERSION),
            size: self.size,
            sha256: self.sha256.to_string(),
            exports: ty
                .exports(engine)
                .map(|(name, _)| name.to_string())
                .collect(),
            imports: ty
                .imports(engine)
                .map(|(name, _)| name.to_string())
                .collect(),
        }
    }
}
