//! The sink's pipeline: chunks already on disk go through a bounded in-flight budget to Rust
//! threads that hash and check them without the GIL; the first failure is kept for the caller to
//! raise.

use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pyo3::exceptions::PyBaseException;
use pyo3::pybacked::PyBackedBytes;
use pyo3::Py;
use sha2::Digest;

use crate::sync::lock;

/// Bytes handed to the stages and not yet released by every one of them: it bounds the memory of
/// the batches in flight.
pub const IN_FLIGHT_LIMIT: usize = 4 << 20;
/// Chunks are handed to the stages in batches of about this many bytes: one wake-up of each
/// stage's thread per batch rather than per 64 KiB chunk.
pub const BATCH_BYTES: usize = 512 * 1024;

/// Something that checks a stream chunk by chunk (a native content verifier, or a Python check).
pub trait StreamCheck: Send + Sync {
    /// Check the next chunk; the failure says why the stream is bad.
    fn feed_bytes(&self, chunk: &[u8]) -> Result<(), Failure>;
}

/// Why the pipeline failed; kept so that every later call can raise it again.
#[derive(Clone)]
pub enum Failure {
    /// Writing the file failed.
    Io(Arc<io::Error>),
    /// The content check found the stream bad.
    Check(String),
    /// A pipeline thread panicked (a bug).
    Panicked(&'static str),
    /// The file has no bytes at this offset yet, though it was to be complete.
    Gap(u64),
    /// A check written in Python raised this exception (raised again as it is).
    Raised(Arc<Py<PyBaseException>>),
}

/// The bytes of one chunk: a Python `bytes` object held without a copy, or a private copy of a
/// mutable buffer (which its owner may change once `write` has returned).
pub enum ChunkBytes {
    Shared(PyBackedBytes),
    Owned(Box<[u8]>),
}

impl Deref for ChunkBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Shared(bytes) => bytes,
            Self::Owned(bytes) => bytes,
        }
    }
}

/// How many bytes are in flight, and a way to wait until there is room for more.
#[derive(Default)]
pub struct Budget {
    in_flight: Mutex<InFlight>,
    freed: Condvar,
}

#[derive(Default)]
struct InFlight {
    bytes: usize,
    /// Someone waits for room: only then does a release wake anyone (a syscall).
    waiting: bool,
}

impl Budget {
    fn admits(in_flight: usize, len: usize) -> bool {
        // A chunk larger than the whole budget still goes through, alone.
        in_flight == 0 || in_flight + len <= IN_FLIGHT_LIMIT
    }

    /// Reserve `len` bytes, waiting up to `timeout` for room; call it with the GIL released.
    pub fn acquire_within(&self, len: usize, timeout: Duration) -> bool {
        let guard = lock(&self.in_flight);
        let (mut in_flight, _) = self
            .freed
            .wait_timeout_while(guard, timeout, |in_flight| {
                in_flight.waiting = true;
                !Self::admits(in_flight.bytes, len)
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        in_flight.waiting = false;
        let admitted = Self::admits(in_flight.bytes, len);
        if admitted {
            in_flight.bytes += len;
        }
        admitted
    }

    /// Return `len` bytes to the budget.
    pub fn release(&self, len: usize) {
        let mut in_flight = lock(&self.in_flight);
        in_flight.bytes -= len;
        if in_flight.waiting {
            self.freed.notify_all();
        }
    }
}

/// Chunks on their way through the stages, in order; their bytes return to the budget when the
/// last stage drops the batch.
pub struct Batch {
    /// Each chunk with how many of its first bytes to leave out (already hashed).
    pieces: Vec<(ChunkBytes, usize)>,
    len: usize,
    budget: Arc<Budget>,
}

impl Batch {
    /// An empty batch; `push` only bytes for which `budget` has already been acquired.
    pub fn new(budget: Arc<Budget>) -> Self {
        Self {
            pieces: Vec::new(),
            len: 0,
            budget,
        }
    }

    /// Add the bytes of `bytes` from `skip` on.
    pub fn push_from(&mut self, bytes: ChunkBytes, skip: usize) {
        self.len += bytes.len() - skip;
        self.pieces.push((bytes, skip));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter().map(|(piece, skip)| &piece[*skip..])
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Dropping a `Shared` piece here, usually without the GIL, defers the `bytes` object's
        // decref to PyO3's pool, which the next call into the extension drains.
        self.budget.release(self.len);
    }
}

/// What the stages share: the first failure, and whether the caller gave up (`abort`).
#[derive(Default)]
pub struct Shared {
    failure: Mutex<Option<Failure>>,
    failed: AtomicBool,
    cancelled: AtomicBool,
}

impl Shared {
    pub fn fail(&self, failure: Failure) {
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(failure);
            self.failed.store(true, Ordering::Release);
        }
    }

    /// The first failure, if any stage failed.
    pub fn failure(&self) -> Option<Failure> {
        if self.failed.load(Ordering::Acquire) {
            lock(&self.failure).clone()
        } else {
            None
        }
    }

    /// Tell the stages to stop working (the caller gave up).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Run one stage: feed every batch to `step` in order until the channel closes. After the
/// stage's own failure, or once the caller has given up, it only drains (so the budget keeps
/// flowing).
fn run_stage<S>(
    batches: &Receiver<Arc<Batch>>,
    shared: &Shared,
    mut state: S,
    mut step: impl FnMut(&mut S, &Batch) -> Result<(), Failure>,
) -> S {
    let mut failed = false;
    for batch in batches {
        if failed || shared.cancelled() {
            continue;
        }
        if let Err(failure) = step(&mut state, &batch) {
            shared.fail(failure);
            failed = true;
        }
    }
    state
}

fn spawn_stage<S: Send + 'static>(
    name: &str,
    shared: &Arc<Shared>,
    state: S,
    step: impl FnMut(&mut S, &Batch) -> Result<(), Failure> + Send + 'static,
) -> io::Result<(Sender<Arc<Batch>>, JoinHandle<S>)> {
    let (sender, receiver) = mpsc::channel();
    let shared = Arc::clone(shared);
    let handle = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || run_stage(&receiver, &shared, state, step))?;
    Ok((sender, handle))
}

/// Start a stage that feeds every piece to `hasher`.
fn spawn_hasher<H: Send + 'static>(
    name: &str,
    shared: &Arc<Shared>,
    hasher: H,
    update: fn(&mut H, &[u8]),
) -> io::Result<(Sender<Arc<Batch>>, JoinHandle<H>)> {
    spawn_stage(name, shared, hasher, move |hasher, batch| {
        batch.pieces().for_each(|piece| update(hasher, piece));
        Ok(())
    })
}

/// What the stages hand back when the pipeline is closed.
pub struct Outcome {
    pub sha256: Option<sha2::Sha256>,
    pub blake3: Option<blake3::Hasher>,
}

/// The running stages of one sink: SHA-256, and optionally BLAKE3 and a content check.
pub struct Pipeline {
    senders: Vec<Sender<Arc<Batch>>>,
    sha256: JoinHandle<sha2::Sha256>,
    blake3: Option<JoinHandle<blake3::Hasher>>,
    check: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Start the stages (the batches they get are in the file already).
    pub fn start(
        shared: &Arc<Shared>,
        with_blake3: bool,
        check: Option<Box<dyn StreamCheck>>,
    ) -> io::Result<Self> {
        let mut senders = Vec::new();
        let (to_sha256, sha256) = spawn_hasher(
            "sink-sha256",
            shared,
            sha2::Sha256::new(),
            |hasher, bytes| {
                hasher.update(bytes);
            },
        )?;
        senders.push(to_sha256);
        let blake3 = if with_blake3 {
            let (to_blake3, blake3) = spawn_hasher(
                "sink-blake3",
                shared,
                blake3::Hasher::new(),
                |hasher, bytes| {
                    hasher.update(bytes);
                },
            )?;
            senders.push(to_blake3);
            Some(blake3)
        } else {
            None
        };
        let check = match check {
            Some(check) => {
                let (to_check, handle) =
                    spawn_stage("sink-check", shared, (), move |(), batch| {
                        batch.pieces().try_for_each(|piece| check.feed_bytes(piece))
                    })?;
                senders.push(to_check);
                Some(handle)
            }
            None => None,
        };
        Ok(Self {
            senders,
            sha256,
            blake3,
            check,
        })
    }

    /// Hand `batch` to every stage; false if a stage is gone (it panicked).
    pub fn send(&self, batch: Batch) -> bool {
        let batch = Arc::new(batch);
        self.senders
            .iter()
            .all(|sender| sender.send(Arc::clone(&batch)).is_ok())
    }

    /// Let the stages finish what is queued and collect their results; call it without the GIL.
    pub fn close(self, shared: &Shared) -> Outcome {
        let Self {
            senders,
            sha256,
            blake3,
            check,
        } = self;
        drop(senders);
        let sha256 = join(sha256, shared, "sink-sha256");
        let blake3 = blake3.and_then(|handle| join(handle, shared, "sink-blake3"));
        if let Some(handle) = check {
            join(handle, shared, "sink-check");
        }
        Outcome { sha256, blake3 }
    }

    /// Stop hashing and checking what is still queued, and close; call it without the GIL.
    pub fn cancel(self, shared: &Shared) -> Outcome {
        shared.cancel();
        self.close(shared)
    }
}

/// Wait for a stage's thread; a panic is recorded in `shared` as the pipeline's failure.
fn join<T>(handle: JoinHandle<T>, shared: &Shared, name: &'static str) -> Option<T> {
    handle
        .join()
        .map_err(|_| shared.fail(Failure::Panicked(name)))
        .ok()
}

/// Record that a stage could not be reached (it panicked), once, in `shared`.
pub fn stage_gone(shared: &Shared) {
    shared.fail(Failure::Panicked("sink pipeline"));
}
