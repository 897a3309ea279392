//! Header maps as Envoy keeps them: ordered `(name, value)` byte pairs, names lower-cased on the
//! way in, lookups case-insensitive, and a lookup answering the first value of a repeated name.

use crate::abi::Pairs;
use std::fmt;

/// An ordered multimap of header names to values, as bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Pairs,
}

impl HeaderMap {
    /// A map of `pairs`, names lower-cased.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut map = Self::default();
        for (name, value) in pairs {
            map.add(name.as_ref(), value.as_ref());
        }
        map
    }

    /// The first value of `name`.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let name = lower(name.as_ref());
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` as UTF-8 (lossy), for assertions.
    pub fn get_str(&self, name: impl AsRef<[u8]>) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: impl AsRef<[u8]>) -> Vec<&[u8]> {
        let name = lower(name.as_ref());
        self.entries
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// Appends a value (Envoy `addCopy`).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.entries.push((lower(name), value.to_vec()));
    }

    /// Replaces every value of `name` with one value, or adds it (Envoy `setCopy`).
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        let name = lower(name);
        match self.entries.iter().position(|(k, _)| *k == name) {
            Some(first) => {
                if let Some(slot) = self.entries.get_mut(first) {
                    slot.1 = value.to_vec();
                }
                let mut index = 0;
                self.entries.retain(|(k, _)| {
                    let keep = index <= first || *k != name;
                    index += 1;
                    keep
                });
            }
            None => self.entries.push((name, value.to_vec())),
        }
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &[u8]) {
        let name = lower(name);
        self.entries.retain(|(k, _)| *k != name);
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &Pairs {
        &self.entries
    }

    /// Replaces the whole map (Envoy `proxy_set_header_map_pairs`).
    pub fn set_pairs(&mut self, pairs: Pairs) {
        self.entries.clear();
        for (k, v) in pairs {
            self.add(&k, &v);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of names and values (Envoy `byteSize`).
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            }))
            .finish()
    }
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_replace_keeps_one() {
        let mut map = HeaderMap::from_pairs([("A", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(map.get("a"), Some(&b"1"[..]));
        assert_eq!(map.get_all("A").len(), 2);
        map.replace(b"A", b"9");
        assert_eq!(map.get_all("a"), vec![&b"9"[..]]);
        map.remove(b"B");
        assert_eq!(map.len(), 1);
    }
}
