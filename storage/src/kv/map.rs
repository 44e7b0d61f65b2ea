//! The ordered map of a range in memory: sorted chunks of pairs, each behind an `Arc`.
//!
//! A copy (what a snapshot takes) clones the chunk index only: one `Arc` per chunk of up to
//! `CHUNK_PAIRS_MAX` pairs, about a microsecond per thousand chunks. A write after a copy
//! clones the one chunk it changes, once (`Arc::make_mut`), so the copy costs the range at most
//! one clone of every chunk, spread over the writes that follow, never a stop of the Raft loop.
//! A split moves whole chunks and splits one; a merge appends the other map's chunks. Reads go
//! through one lookup in the index and one in the chunk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// Pairs at most in one chunk: a chunk that grows past it is cut in two.
const CHUNK_PAIRS_MAX: usize = 512;
/// Pairs under which a chunk that lost pairs joins its neighbour.
const CHUNK_PAIRS_MIN: usize = CHUNK_PAIRS_MAX / 8;

type Chunk = BTreeMap<Vec<u8>, Vec<u8>>;

/// The ordered map of a group (see the module documentation).
#[derive(Clone, Default)]
pub struct KvMap {
    /// Every chunk, by its smallest key; no chunk is empty.
    chunks: BTreeMap<Vec<u8>, Arc<Chunk>>,
    len: usize,
}

impl KvMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of pairs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map holds no pair.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.chunk_of(key)?.1.get(key)
    }

    /// Whether `key` has a value.
    #[must_use]
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// The `n`th smallest key (from 0).
    #[must_use]
    pub fn key_at(&self, mut n: usize) -> Option<&Vec<u8>> {
        for chunk in self.chunks.values() {
            if n < chunk.len() {
                return chunk.keys().nth(n);
            }
            n -= chunk.len();
        }
        None
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.iter().map(|(key, _)| key)
    }

    /// Every pair, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.chunks.values().flat_map(|chunk| chunk.iter())
    }

    /// The pairs between `lower` and `upper`, in key order.
    pub fn range<'a>(
        &'a self,
        lower: Bound<&'a [u8]>,
        upper: Bound<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
        // From the chunk that may hold `lower` on, while a chunk may hold keys under `upper`.
        let first = match lower {
            Bound::Included(key) | Bound::Excluded(key) => {
                self.chunk_of(key).map(|(first, _)| first)
            }
            Bound::Unbounded => None,
        };
        let chunks = match first {
            Some(first) => self
                .chunks
                .range::<[u8], _>((Bound::Included(first.as_slice()), Bound::Unbounded)),
            None => self.chunks.range::<[u8], _>(..),
        };
        chunks
            .take_while(move |(first, _)| match upper {
                Bound::Included(end) => first.as_slice() <= end,
                Bound::Excluded(end) => first.as_slice() < end,
                Bound::Unbounded => true,
            })
            .flat_map(move |(_, chunk)| chunk.range::<[u8], _>((lower, upper)))
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        let first = match self.chunk_of(&key) {
            Some((first, _)) => first.clone(),
            // Below every chunk: the first one takes it (and is keyed by it), or a new one.
            None => match self.chunks.first_key_value() {
                Some((first, _)) => first.clone(),
                None => {
                    self.chunks
                        .insert(key.clone(), Arc::new(Chunk::from([(key, value)])));
                    self.len = 1;
                    return None;
                }
            },
        };
        let Some(chunk) = self.chunks.get_mut(&first) else {
            unreachable!("the chunk was just found");
        };
        let chunk = Arc::make_mut(chunk);
        let below = key < first;
        let replaced = chunk.insert(key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        if below || chunk.len() > CHUNK_PAIRS_MAX {
            self.rechunk(&first);
        }
        replaced
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let first = self.chunk_of(key)?.0.clone();
        let chunk = self.chunks.get_mut(&first)?;
        if !chunk.contains_key(key) {
            // Unchanged: a chunk shared with a copy is not cloned for nothing.
            return None;
        }
        let removed = Arc::make_mut(chunk).remove(key);
        self.len -= 1;
        if first.as_slice() == key || chunk.len() < CHUNK_PAIRS_MIN {
            self.rechunk(&first);
        }
        removed
    }

    /// Moves the pairs from `at` on into a new map.
    #[must_use]
    pub fn split_off(&mut self, at: &[u8]) -> Self {
        let mut right = Self {
            chunks: self.chunks.split_off(at),
            len: 0,
        };
        if let Some(mut last) = self.chunks.last_entry() {
            let tail = Arc::make_mut(last.get_mut()).split_off(at);
            if let Some((first, _)) = tail.first_key_value() {
                right.chunks.insert(first.clone(), Arc::new(tail));
            }
        }
        right.len = right.chunks.values().map(|chunk| chunk.len()).sum();
        self.len -= right.len;
        right
    }

    /// Appends `other`, every key of which lies past this map's.
    ///
    /// # Panics
    /// If `other` holds a key at or below this map's last (a bug in the caller).
    pub fn append(&mut self, other: Self) {
        let last = self
            .chunks
            .last_key_value()
            .and_then(|(_, chunk)| chunk.keys().next_back());
        if let (Some(last), Some((first, _))) = (last, other.chunks.first_key_value()) {
            assert!(
                last < first,
                "appending a map that does not lie past this one"
            );
        }
        let mut chunks = other.chunks;
        self.chunks.append(&mut chunks);
        self.len += other.len;
    }

    /// The chunk that holds `key` if any does: the one with the greatest first key at or
    /// below it.
    fn chunk_of(&self, key: &[u8]) -> Option<(&Vec<u8>, &Arc<Chunk>)> {
        self.chunks
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
    }

    /// Puts the chunk indexed at `first` right after a change: keyed by its smallest key, cut
    /// in two if it grew too large, joined with its predecessor if it shrank too small, and
    /// gone if empty.
    fn rechunk(&mut self, first: &[u8]) {
        let Some(mut chunk) = self.chunks.remove(first) else {
            return;
        };
        if chunk.len() < CHUNK_PAIRS_MIN
            && let Some(previous) = self
                .chunks
                .range_mut::<[u8], _>((Bound::Unbounded, Bound::Excluded(first)))
                .next_back()
        {
            let mut moved = Arc::unwrap_or_clone(chunk);
            Arc::make_mut(previous.1).append(&mut moved);
            let previous = previous.0.clone();
            return self.rechunk(&previous);
        }
        if chunk.len() > CHUNK_PAIRS_MAX {
            let middle = chunk.keys().nth(chunk.len() / 2).cloned();
            if let Some(middle) = middle {
                let upper = Arc::make_mut(&mut chunk).split_off(&middle);
                self.chunks.insert(middle, Arc::new(upper));
            }
        }
        if let Some((smallest, _)) = chunk.first_key_value() {
            self.chunks.insert(smallest.clone(), chunk);
        }
    }
}

impl PartialEq for KvMap {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for KvMap {}

impl std::fmt::Debug for KvMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(Vec<u8>, Vec<u8>)> for KvMap {
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(pairs: I) -> Self {
        let mut map = Self::new();
        for (key, value) in pairs {
            map.insert(key, value);
        }
        map
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every chunk is non-empty, keyed by its smallest key, within the size bound, and
    /// holds only keys below the next chunk's; the count is the sum.
    fn check_shape(map: &KvMap) {
        let mut total = 0;
        let mut previous_last: Option<&Vec<u8>> = None;
        for (first, chunk) in &map.chunks {
            assert!(!chunk.is_empty());
            assert!(chunk.len() <= CHUNK_PAIRS_MAX);
            assert_eq!(chunk.keys().next(), Some(first));
            if let Some(last) = previous_last {
                assert!(last < first);
            }
            previous_last = chunk.keys().next_back();
            total += chunk.len();
        }
        assert_eq!(total, map.len());
    }

    /// `check_shape`, and what inserts and removes alone keep besides: no chunk but the first
    /// is under `CHUNK_PAIRS_MIN` (one that shrank under it joined its predecessor). Splits and
    /// appends may leave small chunks at the cut.
    fn check_shape_without_splits(map: &KvMap) {
        check_shape(map);
        for (first, chunk) in map.chunks.iter().skip(1) {
            assert!(
                chunk.len() >= CHUNK_PAIRS_MIN,
                "the chunk at {first:?} holds {} pairs",
                chunk.len()
            );
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u8),
        Remove(u16),
        Split(u16),
        Copy,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..3000u16, any::<u8>()).prop_map(|(key, value)| Op::Insert(key, value)),
            4 => (0..3000u16).prop_map(Op::Remove),
            1 => (0..3000u16).prop_map(Op::Split),
            1 => Just(Op::Copy),
        ]
    }

    fn key(n: u16) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    proptest! {
        /// The chunked map behaves as one `BTreeMap`, copies taken along the way keep what
        /// they saw, and a split then an append gives the map back.
        #[test]
        fn behaves_as_one_ordered_map(ops in proptest::collection::vec(op(), 1..3000)) {
            let mut map = KvMap::new();
            let mut model = BTreeMap::new();
            let mut copies = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(map.insert(key(k), vec![v]), model.insert(key(k), vec![v]));
                    }
                    Op::Remove(k) => prop_assert_eq!(map.remove(&key(k)), model.remove(&key(k))),
                    Op::Split(k) => {
                        let right = map.split_off(&key(k));
                        let model_right = model.split_off(&key(k));
                        check_shape(&map);
                        check_shape(&right);
                        prop_assert!(right.iter().eq(model_right.iter()));
                        map.append(right);
                        model.extend(model_right);
                    }
                    Op::Copy => copies.push((map.clone(), model.clone())),
                }
                check_shape(&map);
                prop_assert_eq!(map.len(), model.len());
            }
            prop_assert!(map.iter().eq(model.iter()));
            for (copy, seen) in &copies {
                prop_assert!(copy.iter().eq(seen.iter()));
            }
            let (low, high) = (key(700), key(2100));
            let lower = Bound::Excluded(low.as_slice());
            let upper = Bound::Included(high.as_slice());
            prop_assert!(map.range(lower, upper).eq(model.range::<[u8], _>((lower, upper))));
            prop_assert!(map
                .range(Bound::Unbounded, Bound::Excluded(low.as_slice()))
                .eq(model.range::<[u8], _>((Bound::Unbounded, Bound::Excluded(low.as_slice())))));
            for k in [0u16, 5, 1500, 2999] {
                prop_assert_eq!(map.get(&key(k)), model.get(&key(k)));
            }
            for n in [0, map.len() / 2, map.len().saturating_sub(1), map.len()] {
                prop_assert_eq!(map.key_at(n), model.keys().nth(n));
            }
        }
    }

    proptest! {
        /// From a map of many chunks, runs of inserts and (more) runs of removes behave as one
        /// `BTreeMap` while chunks fill up and drain: one that shrank under `CHUNK_PAIRS_MIN`
        /// joins its predecessor, which is cut again if that took it past `CHUNK_PAIRS_MAX`.
        #[test]
        fn chunks_that_shrink_join_their_neighbour(
            runs in proptest::collection::vec((0..3u8, 0..4000u16, 1..240u16), 1..100),
        ) {
            // Every other key: runs of inserts fill chunks up as runs of removes drain them.
            let mut map: KvMap = (0..2000u16).map(|k| (key(2 * k), vec![0])).collect();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> =
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert!(map.chunks.len() >= 7);
            for (kind, start, length) in runs {
                for k in start..start.saturating_add(length) {
                    // One run in three inserts: the map shrinks.
                    if kind == 0 {
                        prop_assert_eq!(map.insert(key(k), vec![1]), model.insert(key(k), vec![1]));
                    } else {
                        prop_assert_eq!(map.remove(&key(k)), model.remove(&key(k)));
                    }
                    check_shape_without_splits(&map);
                }
            }
            prop_assert_eq!(map.len(), model.len());
            prop_assert!(map.iter().eq(model.iter()));
        }
    }

    #[test]
    fn a_copy_shares_every_chunk_until_one_is_written() {
        let mut map: KvMap = (0..5000u16).map(|k| (key(k), vec![1])).collect();
        let copy = map.clone();
        map.insert(key(10), vec![2]);
        let shared = map
            .chunks
            .values()
            .zip(copy.chunks.values())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(
            shared,
            map.chunks.len() - 1,
            "only the written chunk was cloned"
        );
        assert_eq!(copy.get(&key(10)), Some(&vec![1]));
    }
}
