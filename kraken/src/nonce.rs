//! Nonces for one API key: strictly increasing, whatever the clock or the concurrency does.
//!
//! Owns the choice of nonce scale (milliseconds since the Unix epoch) and the high-water mark.
//! Must not: go backwards, hand the same value to two calls, or depend on the clock being steady.
//!
//! Kraken rejects a nonce that is not greater than the last one it accepted for the key, and a
//! key that once accepted a larger scale rejects smaller ones forever, so the scale is fixed here
//! and documented in docs/operations.md. The next nonce is `max(now_ms, last + 1)`: it follows the clock
//! while the clock moves forward and counts up from the last value while the clock stands still or
//! steps back. An optional state file carries the high-water mark across restarts, so a restart
//! after the clock stepped back still continues above the nonces the key already used.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock milliseconds, injected so tests can step the clock back.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Failure to read or write the nonce state file.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    /// The state file exists but could not be read or does not hold a decimal number.
    #[error(
        "nonce state file {path}: {problem}; fix or delete the file (a new one starts at the current time)"
    )]
    BadStateFile {
        /// Where the file is.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The directory the state file belongs in does not exist, so the file could never be written.
    #[error(
        "nonce state file {path}: its directory {directory} does not exist; create the directory (writable by the exporter) or choose a path in an existing one"
    )]
    MissingDirectory {
        /// Where the file is.
        path: PathBuf,
        /// The directory that is missing.
        directory: PathBuf,
    },
    /// A file cannot be created in the state file's directory (read-only, another owner, a full
    /// disk, or a place that holds no files such as `/proc`), so no nonce could be stored.
    #[error(
        "nonce state file {path}: no file can be written in its directory {directory} ({source}); make the directory writable by the user the exporter runs as (and check that its disk is not full), or choose a path in a writable directory"
    )]
    UnwritableDirectory {
        /// Where the file is.
        path: PathBuf,
        /// The directory that refused a new file.
        directory: PathBuf,
        /// The I/O error of the attempt.
        source: io::Error,
    },
    /// The high-water mark is the largest nonce there is: no greater one can follow.
    #[error(
        "nonce state file {path} holds the largest possible nonce, so no call could be signed; delete the file and create a new API key (this key has accepted a nonce no later one can exceed)"
    )]
    Exhausted {
        /// Where the file is.
        path: PathBuf,
    },
    /// The state file could not be written, so a restart could reuse nonces.
    #[error(
        "cannot write nonce state file {path}: {source}; make its directory writable by the user the exporter runs as (and check that its disk is not full)"
    )]
    Write {
        /// Where the file is.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Hands out strictly increasing millisecond nonces for one API key.
pub struct NonceSource {
    /// Wall clock the nonces follow while it moves forward.
    clock: Box<dyn Clock>,
    /// Last nonce handed out; the mutex serialises concurrent callers so no two get the same one.
    last: Mutex<u64>,
    /// Where the high-water mark is persisted, when the operator asked for it.
    state_file: Option<PathBuf>,
}

impl std::fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceSource")
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

impl NonceSource {
    /// A source following `clock`, with no memory across restarts.
    pub fn new(clock: Box<dyn Clock>) -> Self {
        Self {
            clock,
            last: Mutex::new(0),
            state_file: None,
        }
    }

    /// A source that starts above the value stored in `path` (if the file exists) and stores
    /// every nonce it hands out there before the nonce is used.
    pub fn with_state_file(clock: Box<dyn Clock>, path: &Path) -> Result<Self, NonceError> {
        let last = read_state_file(path)?;
        Ok(Self {
            clock,
            last: Mutex::new(last),
            state_file: Some(path.to_owned()),
        })
    }

    /// The latest nonce handed out (or read from the state file); `None` before any.
    pub(crate) fn last(&self) -> Option<u64> {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        (last > 0).then_some(last)
    }

    /// The next nonce: greater than every nonce this source (or, with a state file, an earlier
    /// process) handed out.
    pub(crate) fn next(&self) -> Result<u64, NonceError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let Some(following) = last.checked_add(1) else {
            return Err(NonceError::Exhausted {
                path: self.state_file.clone().unwrap_or_default(),
            });
        };
        let nonce = self.clock.now_millis().max(following);
        if let Some(path) = &self.state_file {
            write_atomically(path, nonce)?;
        }
        *last = nonce;
        Ok(nonce)
    }
}

/// The high-water mark stored in a state file; 0 when the file does not exist yet. A file
/// holding `u64::MAX` is refused: no nonce could follow it.
fn read_state_file(path: &Path) -> Result<u64, NonceError> {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(u64::MAX) => Err(NonceError::Exhausted {
                path: path.to_owned(),
            }),
            Ok(last) => Ok(last),
            Err(_) => Err(NonceError::BadStateFile {
                path: path.to_owned(),
                problem: "it does not hold a decimal number".into(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(NonceError::BadStateFile {
            path: path.to_owned(),
            problem: e.to_string(),
        }),
    }
}

/// Checks that a state file can be used: it holds a number if it exists, its directory exists,
/// and a file can be created there (a temporary one is created and removed again; the state file
/// itself is not touched). Lets `--config.check` and start-up refuse a file that could never be
/// written before the first call spends a nonce.
pub fn check_state_file(path: &Path) -> Result<(), NonceError> {
    read_state_file(path)?;
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Err(NonceError::MissingDirectory {
            path: path.to_owned(),
            directory: directory.to_owned(),
        });
    }
    let probe = directory.join(format!(
        ".{}.check-{}-{}",
        path.file_name()
            .map_or_else(|| "nonce".into(), |name| name.to_string_lossy()),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"0\n"));
    // Removed whether or not the write worked, once it was created.
    let _ = std::fs::remove_file(&probe);
    written.map_err(|source| NonceError::UnwritableDirectory {
        path: path.to_owned(),
        directory: directory.to_owned(),
        source,
    })
}

/// Replaces the state file in one rename, so a crash mid-write never leaves a truncated number.
fn write_atomically(path: &Path, nonce: u64) -> Result<(), NonceError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, nonce.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| NonceError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock the test moves by hand.
    #[derive(Clone, Default)]
    struct ManualClock(Arc<AtomicU64>);

    impl Clock for ManualClock {
        fn now_millis(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn follows_the_clock_and_never_repeats_when_it_stands_still() {
        let clock = ManualClock::default();
        clock.0.store(1_000, Ordering::SeqCst);
        let source = NonceSource::new(Box::new(clock.clone()));
        assert_eq!(source.next().unwrap(), 1_000);
        assert_eq!(source.next().unwrap(), 1_001);
        clock.0.store(5_000, Ordering::SeqCst);
        assert_eq!(source.next().unwrap(), 5_000);
    }

    #[test]
    fn keeps_increasing_when_the_clock_steps_back() {
        let clock = ManualClock::default();
        clock.0.store(10_000, Ordering::SeqCst);
        let source = NonceSource::new(Box::new(clock.clone()));
        let before = source.next().unwrap();
        clock.0.store(2_000, Ordering::SeqCst);
        let after = source.next().unwrap();
        assert!(after > before, "{after} <= {before}");
    }

    #[test]
    fn strictly_increasing_under_concurrent_threads() {
        let source = Arc::new(NonceSource::new(Box::new(SystemClock)));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let source = Arc::clone(&source);
                std::thread::spawn(move || {
                    (0..2_000)
                        .map(|_| source.next().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            let seen = handle.join().unwrap();
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "a thread saw a non-increasing nonce"
            );
            all.extend(seen);
        }
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "two calls received the same nonce");
    }

    #[test]
    fn state_file_carries_the_high_water_mark_across_a_restart_with_the_clock_stepped_back() {
        let dir = tempdir();
        let path = dir.join("nonce");
        let clock = ManualClock::default();
        clock.0.store(50_000, Ordering::SeqCst);
        let first = NonceSource::with_state_file(Box::new(clock.clone()), &path).unwrap();
        let last_before_restart = (0..3).map(|_| first.next().unwrap()).last().unwrap();
        drop(first);

        clock.0.store(1_000, Ordering::SeqCst);
        let second = NonceSource::with_state_file(Box::new(clock), &path).unwrap();
        assert!(second.next().unwrap() > last_before_restart);
    }

    #[test]
    fn a_corrupt_state_file_is_refused_with_the_fix() {
        let dir = tempdir();
        let path = dir.join("nonce");
        std::fs::write(&path, "not a number").unwrap();
        let err = NonceSource::with_state_file(Box::new(SystemClock), &path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("fix or delete"), "{message}");
    }

    #[test]
    fn a_state_file_at_the_largest_nonce_is_refused_instead_of_overflowing() {
        let dir = tempdir();
        let path = dir.join("nonce");
        std::fs::write(&path, u64::MAX.to_string()).unwrap();
        let err = NonceSource::with_state_file(Box::new(SystemClock), &path).unwrap_err();
        assert!(matches!(err, NonceError::Exhausted { .. }), "{err}");
        assert!(check_state_file(&path).is_err());
        // One below the largest still yields exactly one nonce, then refuses instead of wrapping.
        std::fs::write(&path, (u64::MAX - 1).to_string()).unwrap();
        let source = NonceSource::with_state_file(Box::new(SystemClock), &path).unwrap();
        assert_eq!(source.next().unwrap(), u64::MAX);
        assert!(matches!(
            source.next().unwrap_err(),
            NonceError::Exhausted { .. }
        ));
    }

    #[test]
    fn a_missing_directory_is_reported_with_its_own_fix() {
        let dir = tempdir();
        let path = dir.join("absent").join("nonce");
        let message = check_state_file(&path).unwrap_err().to_string();
        assert!(message.contains("create the directory"), "{message}");
        assert!(!message.contains("fix or delete"), "{message}");
    }

    #[test]
    fn a_directory_that_takes_no_file_is_refused_with_the_path_and_the_fix() {
        // /proc refuses new files even to root, so this holds however the tests run.
        let path = Path::new("/proc/kraken-exporter-test.nonce");
        let err = check_state_file(path).unwrap_err();
        assert!(
            matches!(err, NonceError::UnwritableDirectory { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("/proc/kraken-exporter-test.nonce"),
            "{message}"
        );
        assert!(
            message.contains("writable by the user the exporter runs as"),
            "{message}"
        );
    }

    #[test]
    fn the_writability_check_leaves_nothing_behind() {
        let dir = tempdir();
        let path = dir.join("main.nonce");
        check_state_file(&path).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::write(&path, "42").unwrap();
        check_state_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn a_nonce_that_cannot_be_stored_is_not_handed_out() {
        let dir = tempdir();
        let path = dir.join("main.nonce");
        let source = NonceSource::with_state_file(Box::new(SystemClock), &path).unwrap();
        let first = source.next().unwrap();
        // The directory goes away under the running exporter: the write fails, no nonce is used.
        std::fs::remove_dir_all(&dir).unwrap();
        let err = source.next().unwrap_err();
        assert!(matches!(err, NonceError::Write { .. }), "{err:?}");
        assert_eq!(source.last(), Some(first));
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kraken-nonce-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
