//! The process's TLS crypto provider: rustls is built with two (ring for weir's own clients,
//! aws-lc-rs through the Delta Lake crates), so it cannot pick one by itself; weir installs
//! ring before any TLS client is made.

use std::sync::Once;

/// Installs ring as the process's default rustls provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // An error means a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
