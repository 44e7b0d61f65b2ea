//! Where a range's records live in the node's one engine: every key starts with the range's
//! group id (big-endian, so one range's records are contiguous and ranges sort by id) and a
//! tag byte that keeps the range's metadata, its sessions and its pairs apart.
//!
//! ```text
//! group u64 BE | 0x00                                 -> RangeMeta (applied entry, counts, session clock)
//! group u64 BE | 0x01 | session group BE | index BE   -> one session (postcard)
//! group u64 BE | 0x02 | user key                      -> user value
//! ```

use crate::kv::SessionId;
use flotilla_raft::{GroupId, LogIndex};

const TAG_META: u8 = 0;
const TAG_SESSION: u8 = 1;
const TAG_DATA: u8 = 2;
/// One past the last tag: the exclusive end of a range's records.
const TAG_END: u8 = 3;
/// Group id and tag.
pub(crate) const PREFIX_BYTES: usize = 9;
const SESSION_KEY_BYTES: usize = PREFIX_BYTES + 16;

fn prefix(group: GroupId, tag: u8) -> [u8; PREFIX_BYTES] {
    let mut prefix = [tag; PREFIX_BYTES];
    prefix[..8].copy_from_slice(&group.0.to_be_bytes());
    prefix
}

/// The key of the engine's owner: the data directory it belongs to. It sorts after every
/// range's records (a group id and a tag never start with nine 0xff bytes).
pub(crate) fn owner() -> Vec<u8> {
    let mut key = vec![0xff; PREFIX_BYTES];
    key.extend_from_slice(b"owner");
    key
}

/// The key of `group`'s metadata record.
pub(crate) fn meta(group: GroupId) -> Vec<u8> {
    prefix(group, TAG_META).to_vec()
}

/// The key of session `id` in `group`.
pub(crate) fn session(group: GroupId, id: SessionId) -> Vec<u8> {
    let mut key = Vec::with_capacity(SESSION_KEY_BYTES);
    key.extend_from_slice(&prefix(group, TAG_SESSION));
    key.extend_from_slice(&id.group.0.to_be_bytes());
    key.extend_from_slice(&id.index.0.to_be_bytes());
    key
}

/// The session a session key names, `None` for a key of another shape.
pub(crate) fn session_id(key: &[u8]) -> Option<SessionId> {
    let id = key.get(PREFIX_BYTES..SESSION_KEY_BYTES)?;
    let (group, index) = id.split_at(8);
    Some(SessionId {
        group: GroupId(u64::from_be_bytes(group.try_into().ok()?)),
        index: LogIndex(u64::from_be_bytes(index.try_into().ok()?)),
    })
}

/// The bounds `[start, end)` of `group`'s session keys.
pub(crate) fn sessions(group: GroupId) -> (Vec<u8>, Vec<u8>) {
    (
        prefix(group, TAG_SESSION).to_vec(),
        prefix(group, TAG_DATA).to_vec(),
    )
}

/// The engine key of the user key `key` in `group`.
pub(crate) fn data(group: GroupId, key: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(PREFIX_BYTES + key.len());
    data.extend_from_slice(&prefix(group, TAG_DATA));
    data.extend_from_slice(key);
    data
}

/// The exclusive end of `group`'s data keys.
pub(crate) fn data_end(group: GroupId) -> Vec<u8> {
    prefix(group, TAG_END).to_vec()
}

/// The group a key of the engine belongs to.
pub(crate) fn group_of(key: &[u8]) -> Option<GroupId> {
    let group = key.get(..8)?;
    Some(GroupId(u64::from_be_bytes(group.try_into().ok()?)))
}

/// The user key of a data key.
pub(crate) fn user_key(key: &[u8]) -> &[u8] {
    key.get(PREFIX_BYTES..).unwrap_or_default()
}

/// The bounds `[start, end)` of every record of `group`.
pub(crate) fn whole_range(group: GroupId) -> (Vec<u8>, Vec<u8>) {
    (prefix(group, TAG_META).to_vec(), data_end(group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_s_records_sort_together_and_apart_from_its_neighbours() {
        let group = GroupId(7);
        let id = SessionId {
            group: GroupId(3),
            index: LogIndex(9),
        };
        let (start, end) = whole_range(group);
        let keys = [
            meta(group),
            session(group, id),
            data(group, b""),
            data(group, b"\xff"),
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        assert!(keys.iter().all(|key| start <= *key && *key < end));
        assert!(end <= meta(GroupId(8)));
        assert!(data(GroupId(6), b"\xff\xff") < start);
        assert_eq!(session_id(&session(group, id)), Some(id));
        assert_eq!(user_key(&data(group, b"k")), b"k");
    }
}
