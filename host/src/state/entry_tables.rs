//! [`EntryTables`]: a stage's entries in eight hash tables, each entry in the one a hash of
//! its key picks, so a slice of a rolling snapshot walks one table instead of the whole state.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use foldhash::fast::RandomState;

/// How many tables: a rolling snapshot's slice holds the tables `t` with `t % count == index`.
pub const TABLES: usize = 8;

/// Entries by key, in [`TABLES`] tables.
#[derive(Debug, Clone)]
pub struct EntryTables<K, V> {
    tables: [HashMap<K, V, RandomState>; TABLES],
    // foldhash: several times faster than SipHash on short keys, and seeded per process so
    // keys chosen by a producer cannot force collisions (nor all into one table).
    picker: RandomState,
}

impl<K, V> Default for EntryTables<K, V> {
    fn default() -> Self {
        EntryTables {
            tables: std::array::from_fn(|_| HashMap::default()),
            picker: RandomState::default(),
        }
    }
}

impl<K: Borrow<[u8]> + Hash + Eq, V> EntryTables<K, V> {
    /// The table of `key`: bits of its hash that the tables' own hashing leaves alone (the
    /// lowest pick a bucket, the highest tag it).
    fn table_of(&self, key: &[u8]) -> usize {
        (self.picker.hash_one(key) >> 40) as usize % TABLES
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.tables[self.table_of(key)].get(key)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let table = self.table_of(key);
        self.tables[table].get_mut(key)
    }

    pub fn get_key_value(&self, key: &[u8]) -> Option<(&K, &V)> {
        self.tables[self.table_of(key)].get_key_value(key)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.tables[self.table_of(key)].contains_key(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let table = self.table_of(key.borrow());
        self.tables[table].insert(key, value)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let table = self.table_of(key);
        self.tables[table].remove(key)
    }

    pub fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.tables.iter().flatten()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.tables.iter().flat_map(HashMap::values)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.tables.iter_mut().flat_map(HashMap::values_mut)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for table in &mut self.tables {
            table.retain(&mut keep);
        }
    }

    /// The entries of the tables `t` for which `holds(t)`.
    pub fn tables_where(&self, holds: impl Fn(usize) -> bool) -> impl Iterator<Item = (&K, &V)> {
        let tables = self.tables.iter().enumerate();
        tables
            .filter(move |(t, _)| holds(*t))
            .flat_map(|(_, table)| table)
    }
}

impl<K: Borrow<[u8]> + Hash + Eq, V> FromIterator<(K, V)> for EntryTables<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut tables = EntryTables::default();
        for (key, value) in entries {
            tables.insert(key, value);
        }
        tables
    }
}

impl<K, V> IntoIterator for EntryTables<K, V> {
    type Item = (K, V);
    type IntoIter = std::iter::Flatten<std::array::IntoIter<HashMap<K, V, RandomState>, TABLES>>;

    fn into_iter(self) -> Self::IntoIter {
        self.tables.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_spread_over_the_tables_and_are_found_in_theirs() {
        let mut tables: EntryTables<Vec<u8>, usize> = (0..8_000usize)
            .map(|i| (format!("user-{i}").into_bytes(), i))
            .collect();
        assert_eq!(tables.len(), 8_000);
        for t in 0..TABLES {
            let held = tables.tables_where(|table| table == t).count();
            assert!((800..1_200).contains(&held), "table {t}: {held}");
        }
        assert_eq!(tables.get(b"user-7"), Some(&7));
        assert_eq!(tables.remove(b"user-7"), Some(7));
        assert!(!tables.contains_key(b"user-7"));
        tables.retain(|_, v| *v % 2 == 0);
        assert_eq!(tables.len(), 4_000);
        assert_eq!(tables.into_iter().count(), 4_000);
    }
}
