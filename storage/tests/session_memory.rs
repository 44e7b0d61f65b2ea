//! What a session costs a range, measured with a counting allocator: the heap bytes of an idle
//! session, and of each result a session holds for a write its client still awaits. The figures
//! in `docs/protocol/sessions.md` come from this test (`cargo test -p flotilla-storage --test
//! session_memory -- --nocapture`); the bounds below fail if a change makes them grow.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{GroupId, LogIndex};
use flotilla_storage::kv::{SessionId, SessionLimits, SessionTag};
use flotilla_storage::{Codec, Command, KvStateMachine, Proposal};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only adds and
// subtracts the sizes it was given.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SESSIONS: u64 = 10_000;
/// Sessions that then hold `RESULTS_MANY` results each, as a client with that many writes in
/// flight (or answered while an older one is still awaited) makes them.
const BUSY_SESSIONS: u64 = 100;
const RESULTS_MANY: u64 = 64;
const VALUE_BYTES: usize = 256;
/// A wall-clock time of these years, so log times encode at their real size.
const NOW_MS: u64 = 1_800_000_000_000;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// A range's state machine fed entries at consecutive indexes.
struct Range {
    kv: KvStateMachine,
    index: u64,
}

impl Range {
    fn apply(&mut self, payload: &[u8]) {
        self.index += 1;
        let _ = self.kv.apply(LogIndex(self.index), payload);
    }

    /// A put in `session` that replaces a `VALUE_BYTES` value, so its result holds that value.
    fn put(&mut self, session: u64, sequence: u64) {
        let tag = SessionTag {
            session: SessionId {
                group: GroupId(1),
                index: LogIndex(SESSIONS + 1 + session),
            },
            sequence,
            awaited_from: 1,
        };
        let command = Command::Put {
            key: session.to_be_bytes().to_vec(),
            value: vec![2; VALUE_BYTES],
        };
        let write = Proposal::Write {
            time_ms: NOW_MS + 2,
            tag,
            command,
        };
        self.apply(&write.to_payload());
    }
}

/// The heap bytes `work` adds, per `count`.
fn bytes_per(count: u64, work: impl FnOnce()) -> f64 {
    let before = live_bytes();
    work();
    (live_bytes() - before) as f64 / count as f64
}

/// One test, so that no other test allocates while this one counts.
#[test]
fn an_idle_session_and_a_held_result_cost_bounded_bytes() {
    let limits = SessionLimits {
        expiry_ms: 3_600_000,
        sessions_max: SESSIONS as u32,
        results_max: 1024,
    };
    let mut range = Range {
        kv: KvStateMachine::new(GroupId(1)),
        index: 0,
    };
    for key in 0..SESSIONS {
        let put = Command::Put {
            key: key.to_be_bytes().to_vec(),
            value: vec![1; VALUE_BYTES],
        };
        range.apply(&put.encode());
    }
    let open = Proposal::Open {
        time_ms: NOW_MS,
        limits,
    }
    .to_payload();
    let per_session = bytes_per(SESSIONS, || {
        (0..SESSIONS).for_each(|_| range.apply(&open));
    });
    let encoded = |range: &Range| postcard::to_allocvec(range.kv.sessions()).unwrap().len() as f64;
    let idle_encoded = encoded(&range);
    let first_result = bytes_per(SESSIONS, || {
        (0..SESSIONS).for_each(|session| range.put(session, 1));
    });
    let further_result = bytes_per(BUSY_SESSIONS * (RESULTS_MANY - 1), || {
        for session in 0..BUSY_SESSIONS {
            (2..=RESULTS_MANY).for_each(|sequence| range.put(session, sequence));
        }
    });
    assert_eq!(range.kv.sessions().len(), SESSIONS as usize);
    let held = (SESSIONS + BUSY_SESSIONS * (RESULTS_MANY - 1)) as f64;
    let value = VALUE_BYTES as f64;
    let result_encoded = (encoded(&range) - idle_encoded) / held - value;
    println!(
        "heap bytes: {per_session:.0} per idle session; a session's first held result \
         {first_result:.0} ({:.0} beyond the {VALUE_BYTES}-byte previous value it holds); each \
         further one in a session holding {RESULTS_MANY}: {further_result:.0} ({:.0} beyond it); \
         snapshot bytes: {:.0} per idle session, {result_encoded:.0} per held result beyond its value",
        first_result - value,
        further_result - value,
        idle_encoded / SESSIONS as f64,
    );
    assert!(per_session < 200.0, "{per_session} bytes per idle session");
    assert!(first_result < value + 256.0, "{first_result} bytes");
    assert!(further_result < value + 96.0, "{further_result} bytes");
}
