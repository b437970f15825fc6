//! Cranelift's incremental compilation cache, kept in memory: a function whose code did not
//! change since a version compiled before (most of a plugin's, when a new version changes a
//! little of its own code and none of its dependencies) is taken from here instead of compiled
//! again. That is most of what makes a hot reload of a large component fast.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use wasmtime::CacheStore;

/// Bytes of compiled functions kept; the cache starts over when a new entry would pass it.
const CAPACITY: usize = 256 << 20;

/// Compiled functions by Cranelift's key (a hash of the function and the compiler settings).
#[derive(Debug, Default)]
pub struct CompileCache {
    entries: Mutex<Entries>,
}

/// The functions, and the bytes of their keys and values.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl CacheStore for CompileCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.map.get(key).map(|value| Cow::Owned(value.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let size = key.len() + value.len();
        if entries.bytes + size > CAPACITY {
            entries.map.clear();
            entries.bytes = 0;
        }
        entries.bytes += size;
        if let Some(old) = entries.map.insert(key.to_vec(), value) {
            entries.bytes -= key.len() + old.len();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_it_is_given_and_counts_replacements_once() {
        let cache = CompileCache::default();
        assert!(cache.get(b"k").is_none());
        assert!(cache.insert(b"k", vec![1, 2, 3]));
        assert!(cache.insert(b"k", vec![4]));
        assert_eq!(cache.get(b"k").as_deref(), Some(&[4][..]));
        assert_eq!(cache.entries.lock().unwrap().bytes, 2);
    }
}
