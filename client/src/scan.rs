//! A scan across ranges, read a page at a time: [`Scan`] walks the key space in order, one
//! linearizable read of one range per page, and holds only the page it is handing out.

use crate::client::Client;
use crate::error::ClientError;
use flotilla_api::SCAN_PAIR_COUNT_MAX;
use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

/// The default pairs per page.
pub const PAGE_PAIRS: u32 = 1000;

/// The pairs of a key range in key order, from [`Client::scan`]. Read them one by one with
/// [`next`](Self::next) or a page at a time with [`next_page`](Self::next_page) (not both: a
/// page starts after what `next` has handed out).
///
/// Each page is a linearizable read of one range, taken when the page is fetched; the scan as
/// a whole is not one snapshot: a write between two pages shows in the later one only.
#[derive(Debug)]
#[must_use = "a scan fetches nothing until it is read"]
pub struct Scan {
    client: Client,
    /// The first key not fetched yet; `None` once the scan is past its end.
    cursor: Option<Vec<u8>>,
    /// The end of the keys (exclusive); `None`: to the end of the key space.
    end: Option<Vec<u8>>,
    page_pairs: u32,
    /// Fetched and not handed out yet.
    buffer: VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl Scan {
    pub(crate) fn new(client: Client, keys: impl RangeBounds<Vec<u8>>) -> Self {
        // Keys are byte strings: the first key after `k` is `k` followed by a zero byte.
        let after = |key: &Vec<u8>| {
            let mut next = key.clone();
            next.push(0);
            next
        };
        let start = match keys.start_bound() {
            Bound::Included(key) => key.clone(),
            Bound::Excluded(key) => after(key),
            Bound::Unbounded => Vec::new(),
        };
        let end = match keys.end_bound() {
            Bound::Included(key) => Some(after(key)),
            Bound::Excluded(key) => Some(key.clone()),
            Bound::Unbounded => None,
        };
        Self {
            client,
            cursor: Some(start),
            end,
            page_pairs: PAGE_PAIRS,
            buffer: VecDeque::new(),
        }
    }

    /// At most this many pairs per page (1 to `SCAN_PAIR_COUNT_MAX`, clamped; a range also
    /// caps a page's bytes). The default is [`PAGE_PAIRS`].
    pub fn page_pairs(mut self, pairs: u32) -> Self {
        self.page_pairs = pairs.clamp(1, SCAN_PAIR_COUNT_MAX);
        self
    }

    /// The next pair, or `None` at the end.
    ///
    /// # Errors
    /// The page could not be read (see [`ClientError`]); the scan may be read on, from the
    /// same place.
    pub async fn next(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>, ClientError> {
        if self.buffer.is_empty()
            && let Some(page) = self.fetch().await?
        {
            self.buffer.extend(page);
        }
        Ok(self.buffer.pop_front())
    }

    /// The next page of pairs in key order (never empty), or `None` at the end.
    ///
    /// # Errors
    /// The page could not be read (see [`ClientError`]); the scan may be read on, from the
    /// same place.
    pub async fn next_page(&mut self) -> Result<Option<Vec<(Vec<u8>, Vec<u8>)>>, ClientError> {
        if !self.buffer.is_empty() {
            return Ok(Some(self.buffer.drain(..).collect()));
        }
        self.fetch().await
    }

    /// Fetches pages until one has pairs (ranges without keys in the scan give none), or the
    /// scan is past its end.
    async fn fetch(&mut self) -> Result<Option<Vec<(Vec<u8>, Vec<u8>)>>, ClientError> {
        loop {
            let Some(cursor) = self.cursor.take() else {
                return Ok(None);
            };
            if !self.before_end(&cursor) {
                return Ok(None);
            }
            let end = self.end.as_deref();
            let page = match self.client.scan_page(&cursor, end, self.page_pairs).await {
                Ok(page) => page,
                Err(error) => {
                    self.cursor = Some(cursor);
                    return Err(error);
                }
            };
            self.cursor = page.next_start();
            if !page.pairs.is_empty() {
                return Ok(Some(page.pairs));
            }
        }
    }

    fn before_end(&self, cursor: &[u8]) -> bool {
        self.end.as_deref().is_none_or(|end| cursor < end)
    }
}
