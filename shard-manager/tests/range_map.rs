//! Runs the data-driven range map cases in `testdata/range_map.txt`.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::{RangeId, RangeMap};

fn key(text: &str) -> Vec<u8> {
    if text == "-" {
        return Vec::new();
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn show(key: &[u8]) -> String {
    if key.is_empty() {
        "-".to_string()
    } else {
        key.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

fn id(text: &str) -> RangeId {
    RangeId(text.trim_start_matches('r').parse().unwrap())
}

fn run(map: &mut Option<RangeMap>, command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    if words[0] == "uniform" {
        *map = Some(RangeMap::uniform(words[1].parse().unwrap(), |_| {
            vec![NodeId(1)]
        }));
        return String::new();
    }
    let map = map.as_mut().unwrap();
    match words[0] {
        "ranges" => map
            .ranges()
            .map(|range| {
                let end = range.keys.end.as_deref().map_or("∞".to_string(), show);
                format!(
                    "r{}:[{},{end})@g{}",
                    range.id.0,
                    show(&range.keys.start),
                    range.group.0
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        "epoch" => map.epoch().0.to_string(),
        "lookup" => format!("r{}", map.lookup(&key(words[1])).id.0),
        "split" => {
            let group = GroupId(words[3].trim_start_matches('g').parse().unwrap());
            match map.split(id(words[1]), key(words[2]), group) {
                Ok(new_id) => format!("r{}", new_id.0),
                Err(error) => format!("error: {error}"),
            }
        }
        "scan" => {
            let end = (words[2] != "-").then(|| key(words[2]));
            map.ranges_overlapping(&key(words[1]), end.as_deref())
                .map(|range| format!("r{}", range.id.0))
                .collect::<Vec<_>>()
                .join(" ")
        }
        other => panic!("unknown command {other}"),
    }
}

#[test]
fn range_map_cases() {
    let mut map = None;
    let mut checked = 0;
    for line in include_str!("testdata/range_map.txt")
        .lines()
        .map(str::trim)
    {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (command, expected) = match line.split_once("=>") {
            Some((command, expected)) => (command.trim(), Some(expected.trim())),
            None => (line, None),
        };
        let actual = run(&mut map, command);
        if let Some(expected) = expected {
            assert_eq!(actual, expected, "{line}");
            checked += 1;
        }
    }
    assert!(checked > 20, "too few checked cases: {checked}");
}

#[test]
fn a_map_that_does_not_tile_the_key_space_is_refused() {
    let map = RangeMap::uniform(3, |_| vec![NodeId(1)]);
    let mut ranges: Vec<_> = map.ranges().cloned().collect();
    ranges.remove(1);
    let error = RangeMap::new(ranges, map.epoch()).unwrap_err();
    assert!(error.to_string().contains("do not tile"), "{error}");
    let mut no_replica: Vec<_> = map.ranges().cloned().collect();
    no_replica[0].replicas.clear();
    assert!(RangeMap::new(no_replica, map.epoch()).is_err());
}

#[test]
fn a_decoded_map_is_checked_like_a_built_one() {
    use flotilla_shard_manager::{Epoch, KeyRange, RangeDescriptor, RangeEpoch};
    use std::collections::BTreeMap;
    /// The map's wire shape, to forge maps that the constructor would refuse.
    #[derive(serde::Serialize)]
    struct Wire {
        epoch: Epoch,
        ranges: BTreeMap<Vec<u8>, RangeDescriptor>,
        next_range_id: u64,
    }
    let range = |id, start: &[u8], end: Option<&[u8]>, replicas: Vec<NodeId>| RangeDescriptor {
        id: RangeId(id),
        keys: KeyRange {
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
        },
        group: GroupId(id),
        replicas,
        epoch: RangeEpoch::default(),
    };
    let encode = |ranges: Vec<RangeDescriptor>| {
        let ranges = ranges
            .into_iter()
            .map(|range| (range.keys.start.clone(), range))
            .collect();
        postcard::to_allocvec(&Wire {
            epoch: Epoch(1),
            ranges,
            next_range_id: 9,
        })
        .unwrap()
    };
    let decode = |bytes: &[u8]| postcard::from_bytes::<RangeMap>(bytes);
    let good = encode(vec![
        range(1, b"", Some(b"m"), vec![NodeId(1)]),
        range(2, b"m", None, vec![NodeId(1)]),
    ]);
    assert_eq!(decode(&good).unwrap().ranges().count(), 2);
    let gap = encode(vec![
        range(1, b"", Some(b"k"), vec![NodeId(1)]),
        range(2, b"m", None, vec![NodeId(1)]),
    ]);
    assert!(decode(&gap).is_err(), "a gap between ranges");
    let no_replica = encode(vec![range(1, b"", None, vec![])]);
    assert!(decode(&no_replica).is_err(), "a range without replicas");
    let unbounded_first = encode(vec![
        range(1, b"", None, vec![NodeId(1)]),
        range(2, b"m", None, vec![NodeId(1)]),
    ]);
    assert!(decode(&unbounded_first).is_err(), "overlapping ranges");
}

/// A map whose encoded length is damaged is refused: nothing is reserved for the ranges it
/// claims (an allocation of 2^36 ranges aborted the process, past any `catch_unwind`).
#[test]
fn a_damaged_range_count_is_refused_not_allocated() {
    for claimed in [1_u64 << 36, 1 << 62, u64::MAX >> 1] {
        // An epoch, then the ranges' count (a varint, as postcard writes a map's length), and
        // a few bytes of a range.
        let mut bytes = postcard::to_allocvec(&(1_u64, claimed)).unwrap();
        bytes.extend_from_slice(&[0, 1, 2, 3]);
        assert!(
            postcard::from_bytes::<RangeMap>(&bytes).is_err(),
            "{claimed} ranges claimed"
        );
    }
}

/// Up to 65,536 ranges a uniform map cuts the key space on two-byte prefixes, as clusters
/// started before more were allowed; above, on four-byte ones. Either way the ranges tile the
/// key space in equal shares, and a key lands in the range its prefix says.
#[test]
fn uniform_maps_cut_on_two_byte_prefixes_then_on_four() {
    let sixteen = RangeMap::uniform(16, |_| vec![NodeId(1)]);
    let starts: Vec<Vec<u8>> = sixteen.ranges().map(|r| r.keys.start.clone()).collect();
    assert_eq!(starts[0], Vec::<u8>::new());
    assert_eq!(starts[1], vec![0x10, 0x00]);
    assert_eq!(starts[15], vec![0xf0, 0x00]);

    let count = 100_000;
    let map = RangeMap::uniform(count, |_| vec![NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(map.ranges().count() as u64, count);
    let ranges: Vec<_> = map.ranges().collect();
    assert!(ranges[0].keys.start.is_empty());
    assert!(ranges[1..].iter().all(|range| range.keys.start.len() == 4));
    assert_eq!(ranges[count as usize - 1].keys.end, None);
    // Equal shares: 2^32 / 100,000 is 42,949.67, so each range spans 42,949 or 42,950
    // four-byte prefixes.
    let prefix = |key: &[u8]| u64::from(u32::from_be_bytes(key.try_into().unwrap()));
    for pair in ranges[1..].windows(2) {
        let span = prefix(&pair[1].keys.start) - prefix(&pair[0].keys.start);
        assert!((42_949..=42_950).contains(&span), "{span}");
    }
    let key = 0x8000_0000u32.to_be_bytes();
    assert_eq!(map.lookup(&key).group, GroupId(50_001));
}

/// A client's cached map takes in descriptors from maps of any age, in any order, and always
/// tiles the key space; a descriptor older than what it holds changes nothing; once it took in
/// every range of the newest map, it routes every key as that map does.
mod patches {
    use super::*;
    use proptest::prelude::*;

    /// A change to the authoritative map: a split of the range holding a key at that key, or
    /// a merge of the range holding a key with its right neighbour.
    #[derive(Clone, Debug)]
    enum Change {
        Split(u8),
        Merge(u8),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            any::<u8>().prop_map(Change::Split),
            any::<u8>().prop_map(Change::Merge)
        ]
    }

    /// The maps after each change, the first being the start.
    fn history(changes: &[Change]) -> Vec<RangeMap> {
        let mut map = RangeMap::uniform(2, |_| vec![NodeId(1)]);
        let mut maps = vec![map.clone()];
        for change in changes {
            match *change {
                Change::Split(at) => {
                    let range = map.lookup(&[at]).id;
                    let group = map.reserve_range_id();
                    if map.split(range, vec![at], GroupId(group.0)).is_err() {
                        continue;
                    }
                }
                Change::Merge(at) => {
                    let left = map.lookup(&[at]).clone();
                    let Some(end) = left.keys.end.clone() else {
                        continue;
                    };
                    let right = map.lookup(&end).id;
                    map.merge(left.id, right, 0).unwrap();
                }
            }
            maps.push(map.clone());
        }
        maps
    }

    proptest! {
        #[test]
        fn a_cache_takes_in_newer_descriptors_only(
            changes in proptest::collection::vec(change(), 1..40),
            news in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..60),
        ) {
            let maps = history(&changes);
            let mut cache = maps[0].clone();
            for (which, key) in news {
                let source = which.get(&maps);
                let descriptor = source.lookup(&[key]).clone();
                let before: Vec<_> = cache.ranges().cloned().collect();
                let older = cache
                    .ranges()
                    .filter(|cached| cached.keys.overlaps(&descriptor.keys))
                    .any(|cached| cached.epoch.version >= descriptor.epoch.version
                        && *cached != descriptor);
                let changed = cache.patch(&descriptor);
                if older {
                    prop_assert!(!changed, "an older descriptor changed the cache");
                    prop_assert_eq!(cache.ranges().cloned().collect::<Vec<_>>(), before);
                }
                // Still a tiling: `new` checks it.
                let ranges: Vec<_> = cache.ranges().cloned().collect();
                prop_assert!(RangeMap::new(ranges, cache.epoch()).is_ok());
                if !older {
                    prop_assert_eq!(cache.lookup(&[key]), &descriptor);
                }
            }
            let newest = maps.last().unwrap();
            for range in newest.ranges() {
                cache.patch(range);
            }
            for key in 0..=255u8 {
                prop_assert_eq!(cache.lookup(&[key]).group, newest.lookup(&[key]).group);
                prop_assert_eq!(&cache.lookup(&[key]).keys, &newest.lookup(&[key]).keys);
            }
        }
    }
}
