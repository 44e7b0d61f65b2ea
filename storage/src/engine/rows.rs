//! The rows of one range while a batch of entries applies to the disk state machine: writes
//! wait in memory, by key, until the batch commits, and reads see them laid over the engine.

use super::backend::WriteOp;
use super::keys::{self, Space};
use super::meta::RangeMeta;
use super::{Engine, backend_error};
use crate::error::EngineError;
use crate::kv::execute::{PageBuilder, ReadRows, Rows, ScanPage};
use crate::machine::Pair;
use flotilla_raft::GroupId;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A range's rows in the engine while a batch of entries applies: writes gather in `pending`
/// (by user key, the last write of a key winning), and reads see `pending` over the engine, so
/// a later entry of the batch reads what an earlier one wrote.
pub(super) struct EngineRows<'a> {
    engine: &'a Engine,
    /// Where the range's pairs live.
    space: Space,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(super) pair_count: u64,
    pub(super) stored_bytes: u64,
}

impl<'a> EngineRows<'a> {
    pub(super) fn new(engine: &'a Engine, group: GroupId, meta: &RangeMeta) -> Self {
        Self {
            engine,
            space: meta.space_of(group),
            pending: BTreeMap::new(),
            pair_count: meta.pair_count,
            stored_bytes: meta.stored_bytes,
        }
    }

    /// Takes every pair from `at` (included) below `end` (`None`: to the end) out of the range:
    /// the engine's pairs with the batch's writes laid over them, in key order, each then
    /// removed by the batch (a split's right half). One walk over the engine's keys there.
    pub(super) fn take_from(
        &mut self,
        at: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Pair>, EngineError> {
        let lower = keys::data(self.space, at);
        let upper = end.map_or_else(
            || keys::data_end(self.space),
            |end| keys::data(self.space, end),
        );
        let mut stored = Vec::new();
        self.engine
            .backend()
            .scan(&lower, &upper, &mut |key, value| {
                stored.push((keys::user_key(key).to_vec(), value.to_vec()));
                true
            })
            .map_err(backend_error("walk a range to split it"))?;
        let pending_bounds = (
            Bound::Included(at),
            end.map_or(Bound::Unbounded, Bound::Excluded),
        );
        let mut taken: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in self.pending.range::<[u8], _>(pending_bounds) {
            match value {
                Some(value) => taken.insert(key.clone(), value.clone()),
                None => taken.remove(key),
            };
        }
        for (key, value) in &taken {
            self.pair_count -= 1;
            self.stored_bytes -= (key.len() + value.len()) as u64;
            self.pending.insert(key.clone(), None);
        }
        Ok(taken.into_iter().collect())
    }

    /// Adds pairs the range does not hold (a merged neighbour's, all past the range's end,
    /// where it holds no key), without reading the engine for them.
    pub(super) fn put_absent(&mut self, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        for (key, value) in pairs {
            self.pair_count += 1;
            self.stored_bytes += (key.len() + value.len()) as u64;
            self.pending.insert(key, Some(value));
        }
    }

    /// The batch's writes as engine operations.
    pub(super) fn into_ops(self) -> Vec<WriteOp> {
        let space = self.space;
        self.pending
            .into_iter()
            .map(|(key, value)| (keys::data(space, &key), value))
            .collect()
    }
}

impl ReadRows for EngineRows<'_> {
    type Error = EngineError;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if let Some(pending) = self.pending.get(key) {
            return Ok(pending.clone());
        }
        self.engine
            .backend()
            .get(&keys::data(self.space, key))
            .map_err(backend_error("read a key"))
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<ScanPage, EngineError> {
        let lower = keys::data(self.space, start);
        let upper = end.map_or_else(
            || keys::data_end(self.space),
            |end| keys::data(self.space, end),
        );
        let pending_bounds = (
            Bound::Included(start),
            end.map_or(Bound::Unbounded, Bound::Excluded),
        );
        let mut merge = MergedPage {
            page: PageBuilder::new(limit, bytes_max),
            pending: self.pending.range::<[u8], _>(pending_bounds).peekable(),
            full: false,
        };
        self.engine
            .backend()
            .scan(&lower, &upper, &mut |key, value| {
                merge.offer_stored(keys::user_key(key), value)
            })
            .map_err(backend_error("scan a range"))?;
        Ok(merge.finish())
    }
}

/// A scan page of the engine's pairs with the batch's pending writes laid over them.
struct MergedPage<'a, I: Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>> {
    page: PageBuilder,
    pending: std::iter::Peekable<I>,
    full: bool,
}

impl<'a, I: Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>> MergedPage<'a, I> {
    /// Offers a pair the page takes unless it is full (a pending removal offers nothing).
    fn offer(&mut self, key: &[u8], value: Option<&[u8]>) -> bool {
        let Some(value) = value else {
            return true;
        };
        self.full = !self.page.offer(key, value);
        !self.full
    }

    /// Offers the pending writes below `key`, then `key` as the batch or the engine has it;
    /// false once the page is full.
    fn offer_stored(&mut self, key: &[u8], value: &[u8]) -> bool {
        while let Some((pending_key, pending_value)) = self
            .pending
            .next_if(|(pending_key, _)| pending_key.as_slice() < key)
        {
            if !self.offer(pending_key, pending_value.as_deref()) {
                return false;
            }
        }
        match self
            .pending
            .next_if(|(pending_key, _)| pending_key.as_slice() == key)
        {
            Some((_, pending_value)) => self.offer(key, pending_value.as_deref()),
            None => self.offer(key, Some(value)),
        }
    }

    /// The page, with the pending writes past the engine's last pair.
    fn finish(mut self) -> ScanPage {
        while !self.full {
            let Some((key, value)) = self.pending.next() else {
                break;
            };
            self.offer(key, value.as_deref());
        }
        self.page.finish()
    }
}

impl Rows for EngineRows<'_> {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<Option<Vec<u8>>, EngineError> {
        let previous = self.get(&key)?;
        match &previous {
            Some(previous) => self.stored_bytes -= (key.len() + previous.len()) as u64,
            None => self.pair_count += 1,
        }
        self.stored_bytes += (key.len() + value.len()) as u64;
        self.pending.insert(key, Some(value));
        Ok(previous)
    }

    fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let previous = self.get(key)?;
        if let Some(previous) = &previous {
            self.stored_bytes -= (key.len() + previous.len()) as u64;
            self.pair_count -= 1;
            self.pending.insert(key.to_vec(), None);
        }
        Ok(previous)
    }
}
