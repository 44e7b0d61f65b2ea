//! Every limit of the state machine engine, checked once by `validate()` when it opens: what
//! memory it may use and how large the batches of a snapshot install or a range's deletion are.

use thiserror::Error;

/// The smallest block cache: below this the engine reads most blocks twice per lookup.
pub const CACHE_BYTES_MIN: u64 = 1 << 20;

/// The limits of an `Engine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// The block cache shared by every range of the node: the engine's memory beyond its write
    /// buffers.
    pub cache_bytes: u64,
    /// The size at which the in-memory write buffer (memtable) is rotated, to be flushed to a
    /// table file; the engine keeps a few of them. fjall queues the rotation behind its
    /// background work, so with one background thread a buffer grows past this while a
    /// compaction runs.
    pub write_buffer_bytes: u64,
    /// The threads that flush and compact in the background.
    pub background_threads: usize,
    /// Whether each batch is handed to the OS as it commits, so a killed process loses none
    /// of it. Off, batches wait in the engine's journal buffer (about 20% less CPU per
    /// applied entry) and a crash loses more of them: the WAL replays them either way.
    pub flush_each_batch: bool,
    /// The most key and value bytes one engine batch carries while a snapshot is installed or
    /// a range is deleted: those run in several batches, never one of the whole range.
    pub batch_bytes_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            write_buffer_bytes: 16 << 20,
            background_threads: 1,
            flush_each_batch: true,
            batch_bytes_max: 4 << 20,
        }
    }
}

impl EngineConfig {
    /// Small limits for tests: installs and deletions run in many batches.
    #[must_use]
    pub fn small_for_tests() -> Self {
        Self {
            cache_bytes: CACHE_BYTES_MIN,
            write_buffer_bytes: 1 << 20,
            background_threads: 1,
            flush_each_batch: true,
            batch_bytes_max: 256,
        }
    }

    /// Checks every limit.
    ///
    /// # Errors
    /// A sentence naming the first limit that is out of range.
    pub fn validate(&self) -> Result<(), EngineConfigError> {
        if self.cache_bytes < CACHE_BYTES_MIN {
            return Err(EngineConfigError::CacheTooSmall(self.cache_bytes));
        }
        if self.write_buffer_bytes < 1 << 20 {
            return Err(EngineConfigError::WriteBufferTooSmall(
                self.write_buffer_bytes,
            ));
        }
        if !(1..=4).contains(&self.background_threads) {
            return Err(EngineConfigError::BackgroundThreads(
                self.background_threads,
            ));
        }
        if self.batch_bytes_max == 0 {
            return Err(EngineConfigError::BatchBytesMaxZero);
        }
        Ok(())
    }
}

/// A limit of the engine's configuration is out of range.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EngineConfigError {
    /// The cache is too small to be useful.
    #[error("cache_bytes {0} is below the minimum of 1 MiB")]
    CacheTooSmall(u64),
    /// The write buffer is below what the engine accepts.
    #[error("write_buffer_bytes {0} is below the minimum of 1 MiB")]
    WriteBufferTooSmall(u64),
    /// The background thread count is out of range.
    #[error("background_threads {0} is not between 1 and 4")]
    BackgroundThreads(usize),
    /// Batches could hold nothing.
    #[error("batch_bytes_max must be greater than zero")]
    BatchBytesMaxZero,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_checked() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        assert_eq!(EngineConfig::small_for_tests().validate(), Ok(()));
        let cases = [
            EngineConfig {
                cache_bytes: 1000,
                ..EngineConfig::default()
            },
            EngineConfig {
                write_buffer_bytes: 0,
                ..EngineConfig::default()
            },
            EngineConfig {
                background_threads: 0,
                ..EngineConfig::default()
            },
            EngineConfig {
                batch_bytes_max: 0,
                ..EngineConfig::default()
            },
        ];
        let errors: Vec<String> = cases
            .iter()
            .map(|config| config.validate().unwrap_err().to_string())
            .collect();
        assert_eq!(
            errors,
            [
                "cache_bytes 1000 is below the minimum of 1 MiB",
                "write_buffer_bytes 0 is below the minimum of 1 MiB",
                "background_threads 0 is not between 1 and 4",
                "batch_bytes_max must be greater than zero",
            ]
        );
    }
}
