//! The segment being appended: places records at the end of the active segment in batches (one
//! per sync, opened by a batch header, at most `sync_bytes_max` bytes), syncs at the end of each
//! commit and confirms the last batch with a sync mark, and rolls over to a new preallocated
//! segment that starts with a checkpoint of every group's hard state and snapshot marker (so
//! only entries, never metadata, keep old segments alive).

use super::Shared;
use super::batch::EncodedBatch;
use super::batch_frame::{BatchHeader, FILLER, FRAME_BYTES, SyncMark, count_sectors, padded};
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
    /// The open batch: a header's room, then frames; empty when no batch is open.
    unsynced: Vec<u8>,
    /// Where the open batch starts (a multiple of `FRAME_BYTES`).
    unsynced_offset: u64,
    /// The sequence number the next batch gets.
    next_batch_sequence: u64,
    /// The last synced batch, while nothing written after it proves it durable.
    unmarked: Option<u64>,
    sync_count: u64,
    spare: Option<Spare>,
    /// The id every new segment's header carries.
    log_id: u64,
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
    /// A writer appending to `active` at `position`, with each group's latest metadata.
    pub(crate) fn new(
        active: Arc<Segment>,
        position: WritePosition,
        metadata: BTreeMap<GroupId, GroupMeta>,
    ) -> Self {
        debug_assert_eq!(position.offset % FRAME_BYTES, 0, "batches start aligned");
        Self {
            active,
            write_offset: position.offset,
            metadata,
            unsynced: Vec::new(),
            unsynced_offset: position.offset,
            next_batch_sequence: position.next_batch_sequence,
            unmarked: None,
            sync_count: 0,
            spare: None,
            log_id: position.log_id,
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
        self.mark()?;
        Ok((locations, self.sync_count))
    }

    /// Writes and syncs the open batch (the checkpoint after an open), and confirms it.
    pub(crate) fn sync_now(&mut self) -> io::Result<()> {
        self.flush()?;
        self.mark()
    }

    fn place(
        &mut self,
        shared: &Shared,
        group: GroupId,
        frame: &[u8],
        effect: &Effect,
    ) -> io::Result<Location> {
        let frame_bytes = frame.len() as u64;
        if !self.fits_segment(shared, frame_bytes) {
            self.flush()?;
            self.mark()?;
            self.roll_over(shared)?;
        }
        let window = shared.config.sync_bytes_max;
        if !self.unsynced.is_empty() && self.unsynced.len() as u64 + frame_bytes > window {
            self.flush()?;
        }
        if self.unsynced.is_empty() {
            self.open_batch();
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

    /// Whether a frame of `frame_bytes` fits the active segment, together with the header of a
    /// new batch if none is open, the padding, and the sync mark that may follow.
    fn fits_segment(&self, shared: &Shared, frame_bytes: u64) -> bool {
        let header_bytes = if self.unsynced.is_empty() {
            FRAME_BYTES
        } else {
            0
        };
        let batch_start = if self.unsynced.is_empty() {
            self.write_offset
        } else {
            self.unsynced_offset
        };
        let body = self.write_offset + header_bytes + frame_bytes - batch_start - FRAME_BYTES;
        let end = batch_start + FRAME_BYTES + padded(body);
        end + FRAME_BYTES <= shared.config.segment_bytes_max
    }

    /// Opens a batch at the write offset: room for its header, filled in by `flush`. Its header
    /// will prove the batch before it synced, so that one needs no mark.
    fn open_batch(&mut self) {
        self.unsynced_offset = self.write_offset;
        self.unsynced.resize(FRAME_BYTES as usize, 0);
        self.write_offset += FRAME_BYTES;
        self.unmarked = None;
    }

    /// Closes the open batch (header, padding), writes it with one call and syncs it.
    fn flush(&mut self) -> io::Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let body_bytes = self.unsynced.len() as u64 - FRAME_BYTES;
        self.unsynced.resize(
            padded(self.unsynced.len() as u64 - FRAME_BYTES) as usize + FRAME_BYTES as usize,
            FILLER,
        );
        let body_offset = self.unsynced_offset + FRAME_BYTES;
        let header = BatchHeader {
            sequence: self.next_batch_sequence,
            body_bytes: u32::try_from(body_bytes).expect("a batch is smaller than a segment"),
            sectors: count_sectors(&self.unsynced[FRAME_BYTES as usize..], body_offset),
        };
        self.unsynced[..FRAME_BYTES as usize].copy_from_slice(&header.encode());
        let file = self.active.file();
        file.write_at(self.unsynced_offset, &self.unsynced)?;
        file.sync_data()?;
        self.sync_count += 1;
        self.write_offset = self.unsynced_offset + header.padded_bytes();
        self.unsynced.clear();
        self.unmarked = Some(header.sequence);
        self.next_batch_sequence += 1;
        Ok(())
    }

    /// Confirms the last synced batch with a sync mark (written, not synced: the next sync
    /// carries it). Recovery then knows that batch was durable and never cuts it as torn.
    fn mark(&mut self) -> io::Result<()> {
        let Some(sequence) = self.unmarked.take() else {
            return Ok(());
        };
        let mark = SyncMark { sequence }.encode();
        self.active.file().write_at(self.write_offset, &mark)?;
        self.write_offset += FRAME_BYTES;
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
            Effect::Destroy(tombstone) => {
                let meta = self.metadata.entry(group).or_default();
                meta.hard_state = Some(*tombstone);
                meta.snapshot = None;
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
                let identity = SegmentIdentity {
                    sequence,
                    log_id: self.log_id,
                };
                create_segment(fs, &shared.directory, &shared.config, identity)?
            }
        };
        self.start_spare(shared);
        self.active.seal()?;
        shared.segments.write().insert(sequence, next.clone());
        self.active = next;
        self.write_offset = SEGMENT_HEADER_BYTES;
        self.unsynced_offset = SEGMENT_HEADER_BYTES;
        self.unmarked = None;
        let checkpoint = self.checkpoint(shared)?;
        if !checkpoint_fits(&shared.config, checkpoint.bytes.len() as u64) {
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
            file.write_at(0, &segment::encode_header(sequence, self.log_id))?;
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

/// Whether a checkpoint of `checkpoint_bytes` fits a fresh segment, with the batch headers,
/// padding and mark of however many batches the sync window splits it into. (A checkpoint that
/// did not fit would roll over forever.)
fn checkpoint_fits(config: &LogConfig, checkpoint_bytes: u64) -> bool {
    let window = config.sync_bytes_max - FRAME_BYTES;
    let batch_count = checkpoint_bytes / window + 1;
    // Each batch: a header, up to a frame and a byte of filler, and a mark.
    let overhead = batch_count * 4 * FRAME_BYTES;
    SEGMENT_HEADER_BYTES + checkpoint_bytes + overhead <= config.segment_bytes_max
}

fn effect_term(effect: &Effect) -> flotilla_raft::Term {
    match effect {
        Effect::Entry { term, .. } => *term,
        _ => flotilla_raft::Term::ZERO,
    }
}

/// Where the writer continues: the offset in the active segment, the next batch's sequence
/// number and the log's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WritePosition {
    pub(crate) offset: u64,
    pub(crate) next_batch_sequence: u64,
    pub(crate) log_id: u64,
}

/// Which segment a new file is: its sequence number and the log it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentIdentity {
    pub(crate) sequence: u64,
    pub(crate) log_id: u64,
}

/// Creates a segment the slow way (when no spare is ready): zero-filled when preallocating,
/// with its header written and synced, and the directory synced so the file survives a crash.
pub(crate) fn create_segment(
    fs: &dyn FileSystem,
    directory: &Path,
    config: &LogConfig,
    identity: SegmentIdentity,
) -> io::Result<Arc<Segment>> {
    let SegmentIdentity { sequence, log_id } = identity;
    let path = directory.join(segment::file_name(sequence));
    let file = fs.open(&path, true)?;
    file.set_len(0)?;
    if config.preallocate {
        write_zeros(file.as_ref(), 0, config.segment_bytes_max)?;
    }
    file.write_at(0, &segment::encode_header(sequence, log_id))?;
    file.sync_data()?;
    fs.sync_directory(directory)?;
    Ok(Arc::new(Segment::new(sequence, &path, file)))
}
