//! Where a range's records live in the node's one engine. Every key starts with a u64
//! (big-endian, so keys sort by it) and a tag byte. A range's metadata record is keyed by its
//! group id; it names the *space* its sessions and pairs live under: the group id itself (every
//! range a boot or a split made, and every record written before spaces existed), or a space
//! the engine drew for a snapshot ingested off the Raft loop (top bit set: no group id reaches
//! it, `Engine::open_range` refuses one that would).
//!
//! ```text
//! group u64 BE | 0x00                                 -> RangeMeta (applied entry, counts, space)
//! space u64 BE | 0x01 | session group BE | index BE   -> one session (postcard)
//! space u64 BE | 0x02 | user key                      -> user value
//! ```

use crate::kv::SessionId;
use flotilla_raft::{GroupId, LogIndex};

const TAG_META: u8 = 0;
const TAG_SESSION: u8 = 1;
const TAG_DATA: u8 = 2;
/// One past the last tag: the exclusive end of a range's records.
const TAG_END: u8 = 3;
/// Group id (or space) and tag.
pub(crate) const PREFIX_BYTES: usize = 9;
const SESSION_KEY_BYTES: usize = PREFIX_BYTES + 16;
/// The first space the engine draws; every group id is below it.
pub(crate) const DRAWN_FIRST: u64 = 1 << 63;
/// The prefix of the owner's key: never a space.
const OWNER_PREFIX: u64 = u64::MAX;

/// The prefix a range's sessions and pairs are keyed under: its group's id, or a space the
/// engine drew (`DRAWN_FIRST..u64::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Space(pub(crate) u64);

impl Space {
    /// The space of `group`'s own id.
    pub(crate) fn of(group: GroupId) -> Self {
        Self(group.0)
    }

    /// Whether the engine drew it (no group id is this large).
    pub(crate) fn is_drawn(self) -> bool {
        self.0 >= DRAWN_FIRST
    }
}

/// Whether `group` may have a range in the engine: its id is below every drawn space.
pub(crate) fn is_group_id(group: GroupId) -> bool {
    group.0 < DRAWN_FIRST
}

fn prefix(id: u64, tag: u8) -> [u8; PREFIX_BYTES] {
    let mut prefix = [tag; PREFIX_BYTES];
    prefix[..8].copy_from_slice(&id.to_be_bytes());
    prefix
}

/// The key of the engine's owner: the data directory it belongs to. It sorts after every
/// range's records and every space (a group id or a space and a tag never start with nine
/// 0xff bytes).
pub(crate) fn owner() -> Vec<u8> {
    let mut key = prefix(OWNER_PREFIX, 0xff).to_vec();
    key.extend_from_slice(b"owner");
    key
}

/// The key of `group`'s metadata record.
pub(crate) fn meta(group: GroupId) -> Vec<u8> {
    prefix(group.0, TAG_META).to_vec()
}

/// The first key of the drawn spaces: the exclusive end of every group's metadata.
pub(crate) fn drawn_start() -> Vec<u8> {
    prefix(DRAWN_FIRST, TAG_META).to_vec()
}

/// The exclusive end of the drawn spaces (the owner's key is past it).
pub(crate) fn drawn_end() -> Vec<u8> {
    prefix(OWNER_PREFIX, TAG_META).to_vec()
}

/// The key of session `id` in `space`.
pub(crate) fn session(space: Space, id: SessionId) -> Vec<u8> {
    let mut key = Vec::with_capacity(SESSION_KEY_BYTES);
    key.extend_from_slice(&prefix(space.0, TAG_SESSION));
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

/// The bounds `[start, end)` of `space`'s session keys.
pub(crate) fn sessions(space: Space) -> (Vec<u8>, Vec<u8>) {
    (
        prefix(space.0, TAG_SESSION).to_vec(),
        prefix(space.0, TAG_DATA).to_vec(),
    )
}

/// The engine key of the user key `key` in `space`.
pub(crate) fn data(space: Space, key: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(PREFIX_BYTES + key.len());
    data.extend_from_slice(&prefix(space.0, TAG_DATA));
    data.extend_from_slice(key);
    data
}

/// The exclusive end of `space`'s data keys.
pub(crate) fn data_end(space: Space) -> Vec<u8> {
    prefix(space.0, TAG_END).to_vec()
}

/// The group id or space a key of the engine starts with.
pub(crate) fn prefix_of(key: &[u8]) -> Option<u64> {
    let id = key.get(..8)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Whether `key` is a metadata record's key.
pub(crate) fn is_meta(key: &[u8]) -> bool {
    key.len() == PREFIX_BYTES && key.get(8) == Some(&TAG_META)
}

/// The user key of a data key.
pub(crate) fn user_key(key: &[u8]) -> &[u8] {
    key.get(PREFIX_BYTES..).unwrap_or_default()
}

/// The bounds `[start, end)` of `space`'s sessions and pairs (never a metadata record).
pub(crate) fn space_records(space: Space) -> (Vec<u8>, Vec<u8>) {
    (prefix(space.0, TAG_SESSION).to_vec(), data_end(space))
}

/// The bounds `[start, end)` of every record keyed by `group`'s id: its metadata, and the
/// sessions and pairs of its own space.
pub(crate) fn whole_range(group: GroupId) -> (Vec<u8>, Vec<u8>) {
    (meta(group), data_end(Space::of(group)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_s_records_sort_together_and_apart_from_its_neighbours() {
        let group = GroupId(7);
        let space = Space::of(group);
        let id = SessionId {
            group: GroupId(3),
            index: LogIndex(9),
        };
        let (start, end) = whole_range(group);
        let keys = [
            meta(group),
            session(space, id),
            data(space, b""),
            data(space, b"\xff"),
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        assert!(keys.iter().all(|key| start <= *key && *key < end));
        assert!(end <= meta(GroupId(8)));
        assert!(data(Space::of(GroupId(6)), b"\xff\xff") < start);
        assert_eq!(session_id(&session(space, id)), Some(id));
        assert_eq!(user_key(&data(space, b"k")), b"k");
        assert!(is_meta(&meta(group)) && !is_meta(&data(space, b"")));
    }

    /// Drawn spaces sort after every group's records and before the owner's key, so a walk
    /// over the groups stops before them and a walk over the spaces stops before the owner.
    #[test]
    fn drawn_spaces_sort_between_the_groups_and_the_owner() {
        let last_group = GroupId(DRAWN_FIRST - 1);
        assert!(is_group_id(last_group) && !is_group_id(GroupId(DRAWN_FIRST)));
        assert!(whole_range(last_group).1 <= drawn_start());
        let first = Space(DRAWN_FIRST);
        let last = Space(OWNER_PREFIX - 1);
        assert!(first.is_drawn() && !Space::of(last_group).is_drawn());
        assert!(drawn_start() <= space_records(first).0);
        assert!(space_records(last).1 <= drawn_end());
        assert!(drawn_end() < owner());
        assert_eq!(prefix_of(&data(last, b"k")), Some(last.0));
    }
}
