//! The segment being appended: places records at the end of the active segment, syncs at most
//! every `sync_bytes_max` bytes and at the end of each commit, and rolls over to a new
//! preallocated segment that starts with a checkpoint of every group's hard state and snapshot
//! marker (so only entries, never metadata, keep old segments alive).

use super::Shared;
use super::batch::EncodedBatch;
use super::body::{Body, Effect, SnapshotMarker};
use super::index::Location;
use super::segment::{self, Segment};
use super::spare::{Spare, write_zeros};
use crate::config::{LogConfig, SEGMENT_HEADER_BYTES};
use crate::file::FileSystem;
use flotilla_raft::{GroupId, HardState};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The metadata of one group a checkpoint repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupMeta {
    pub(crate) hard_state: Option<HardState>,
    pub(crate) snapshot: Option<SnapshotMarker>,
}

/// The appending end of the log. Owned by the commit leader through the writer mutex.
pub(crate) struct Writer {
    active: Arc<Segment>,
    write_offset: u64,
    metadata: BTreeMap<GroupId, GroupMeta>,
    unsynced: Vec<u8>,
    unsynced_offset: u64,
    sync_count: u64,
    spare: Option<Spare>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Never leave a thread writing into the directory after the engine is gone.
        if let Some(spare) = self.spare.take() {
            let _ = spare.finish(Path::new(""));
        }
    }
}

impl Writer {
    /// A writer appending to `active` at `write_offset`, with each group's latest metadata.
    pub(crate) fn new(
        active: Arc<Segment>,
        write_offset: u64,
        metadata: BTreeMap<GroupId, GroupMeta>,
    ) -> Self {
        Self {
            active,
            write_offset,
            metadata,
            unsynced: Vec::new(),
            unsynced_offset: write_offset,
            sync_count: 0,
            spare: None,
        }
    }

    /// The sequence number of the segment being appended.
    pub(crate) fn active_sequence(&self) -> u64 {
        self.active.sequence
    }

    /// Places every record of `batches`, writes and syncs them, and returns their locations in
    /// order together with the number of syncs it took.
    pub(crate) fn place_all(
        &mut self,
        shared: &Shared,
        batches: &[EncodedBatch],
    ) -> io::Result<(Vec<Location>, u64)> {
        self.sync_count = 0;
        let mut locations = Vec::new();
        for batch in batches {
            self.place_batch(shared, batch, &mut locations)?;
        }
        self.flush()?;
        Ok((locations, self.sync_count))
    }

    fn place(
        &mut self,
        shared: &Shared,
        group: GroupId,
        frame: &[u8],
        effect: &Effect,
    ) -> io::Result<Location> {
        let frame_bytes = frame.len() as u64;
        if self.write_offset + frame_bytes > shared.config.segment_bytes_max {
            self.flush()?;
            self.roll_over(shared)?;
        }
        if self.unsynced.len() as u64 + frame_bytes > shared.config.sync_bytes_max {
            self.flush()?;
        }
        let location = Location {
            segment: self.active.sequence,
            offset: self.write_offset,
            frame_bytes: u32::try_from(frame_bytes).expect("records are smaller than segments"),
            term: effect_term(effect),
        };
        self.unsynced.extend_from_slice(frame);
        self.write_offset += frame_bytes;
        self.note_metadata(group, effect);
        Ok(location)
    }

    /// Writes the unsynced bytes with one call and syncs them.
    fn flush(&mut self) -> io::Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let file = self.active.file();
        file.write_at(self.unsynced_offset, &self.unsynced)?;
        file.sync_data()?;
        self.sync_count += 1;
        self.unsynced.clear();
        self.unsynced_offset = self.write_offset;
        Ok(())
    }

    fn note_metadata(&mut self, group: GroupId, effect: &Effect) {
        match effect {
            Effect::Entry { .. } => {}
            Effect::HardState(hard_state) => {
                self.metadata.entry(group).or_default().hard_state = Some(*hard_state);
            }
            Effect::Snapshot(marker) => {
                // Installing raises the commit index (as `GroupState::apply` does); the
                // checkpoint must carry the raised value, since it replays as a compaction.
                let meta = self.metadata.entry(group).or_default();
                let hard_state = meta.hard_state.get_or_insert_with(HardState::default);
                hard_state.commit = hard_state.commit.max(marker.index());
                meta.snapshot = Some(marker.clone());
            }
            Effect::Compaction(marker) => {
                let meta = self.metadata.entry(group).or_default();
                if meta
                    .snapshot
                    .as_ref()
                    .is_none_or(|old| old.index() < marker.index())
                {
                    meta.snapshot = Some(marker.clone());
                }
            }
        }
    }

    /// Seals the active segment and continues in a new one that opens with a checkpoint; the
    /// caller has flushed.
    pub(crate) fn roll_over(&mut self, shared: &Shared) -> io::Result<()> {
        let sequence = self.active.sequence + 1;
        let next = match self.take_spare(shared, sequence) {
            Some(segment) => segment,
            None => {
                let fs = shared.fs.as_ref();
                create_segment(fs, &shared.directory, &shared.config, sequence)?
            }
        };
        self.start_spare(shared);
        self.active.seal()?;
        shared.segments.write().insert(sequence, next.clone());
        self.active = next;
        self.write_offset = SEGMENT_HEADER_BYTES;
        self.unsynced_offset = SEGMENT_HEADER_BYTES;
        let checkpoint = self.checkpoint(shared)?;
        if SEGMENT_HEADER_BYTES + checkpoint.bytes.len() as u64 > shared.config.segment_bytes_max {
            return Err(io::Error::other(
                "the checkpoint of all groups does not fit a segment",
            ));
        }
        self.place_batch(shared, &checkpoint, &mut Vec::new())
    }

    /// Starts preparing the next segment in the background (when preallocating).
    pub(crate) fn start_spare(&mut self, shared: &Shared) {
        if !shared.config.preallocate || self.spare.is_some() {
            return;
        }
        let segment_bytes = shared.config.segment_bytes_max;
        match Spare::start(shared.fs.clone(), &shared.directory, segment_bytes) {
            Ok(spare) => self.spare = Some(spare),
            Err(error) => tracing::warn!(%error, "could not start preparing a spare segment"),
        }
    }

    /// Turns the prepared spare into segment `sequence`; `None` (logged) when there is no spare
    /// or it failed, and the caller creates the segment the slow way.
    fn take_spare(&mut self, shared: &Shared, sequence: u64) -> Option<Arc<Segment>> {
        let spare = self.spare.take()?;
        let path = shared.directory.join(segment::file_name(sequence));
        let adopted = spare.finish(&shared.directory).and_then(|spare_path| {
            shared.fs.rename(&spare_path, &path)?;
            let file = shared.fs.open(&path, false)?;
            file.write_at(0, &segment::encode_header(sequence))?;
            file.sync_data()?;
            shared.fs.sync_directory(&shared.directory)?;
            Ok(Arc::new(Segment::new(sequence, &path, file)))
        });
        adopted
            .inspect_err(|error| tracing::warn!(%error, "could not use the spare segment"))
            .ok()
    }

    /// Places the records of one batch, adding their locations to `locations`.
    fn place_batch(
        &mut self,
        shared: &Shared,
        batch: &EncodedBatch,
        locations: &mut Vec<Location>,
    ) -> io::Result<()> {
        let mut start = 0;
        for record in &batch.records {
            let end = start + record.frame_bytes as usize;
            let frame = &batch.bytes[start..end];
            locations.push(self.place(shared, record.group, frame, &record.effect)?);
            start = end;
        }
        Ok(())
    }

    /// Every group's snapshot marker, then hard state, as records.
    fn checkpoint(&self, shared: &Shared) -> io::Result<EncodedBatch> {
        let mut batch = EncodedBatch::default();
        let limit = shared.config.record_bytes_max;
        for (group, meta) in &self.metadata {
            if let Some(marker) = &meta.snapshot {
                batch
                    .push(*group, Body::Compaction(marker.clone()), limit)
                    .map_err(io::Error::other)?;
            }
            if let Some(hard_state) = meta.hard_state {
                batch
                    .push(*group, Body::HardState(hard_state), limit)
                    .map_err(io::Error::other)?;
            }
        }
        Ok(batch)
    }
}

fn effect_term(effect: &Effect) -> flotilla_raft::Term {
    match effect {
        Effect::Entry { term, .. } => *term,
        _ => flotilla_raft::Term::ZERO,
    }
}

/// Creates segment `sequence` the slow way (when no spare is ready): zero-filled when
/// preallocating, with its header written and synced, and the directory synced so the file
/// survives a crash.
pub(crate) fn create_segment(
    fs: &dyn FileSystem,
    directory: &Path,
    config: &LogConfig,
    sequence: u64,
) -> io::Result<Arc<Segment>> {
    let path = directory.join(segment::file_name(sequence));
    let file = fs.open(&path, true)?;
    file.set_len(0)?;
    if config.preallocate {
        write_zeros(file.as_ref(), 0, config.segment_bytes_max)?;
    }
    file.write_at(0, &segment::encode_header(sequence))?;
    file.sync_data()?;
    fs.sync_directory(directory)?;
    Ok(Arc::new(Segment::new(sequence, &path, file)))
}
