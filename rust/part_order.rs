//! The in-order side of `PartSink`: which bytes are on disk, the early chunks held in a
//! process-wide reorder window, and the thread that feeds the file to the hashing stages in order.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::pipeline::{
    stage_gone, Batch, Budget, ChunkBytes, Failure, Outcome, Pipeline, Shared, BATCH_BYTES,
};
use crate::sync::lock;

/// The bytes of early chunks every `PartSink` of the process may hold at once (and the default
/// cap of one sink within it).
pub const REORDER_WINDOW: usize = 32 << 20;
/// The most bytes read back from the file in one step (one batch).
const READ_BACK_STEP: u64 = BATCH_BYTES as u64;
/// How often the ordering thread, waiting for room in the stages, looks whether it was cancelled.
const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The process-wide reorder budget: bytes held by every sink, and a generation that moves on
/// each release so that a waiting writer never misses one.
struct Window {
    state: Mutex<WindowState>,
    changed: Condvar,
}

struct WindowState {
    held: usize,
    generation: u64,
    waiting: usize,
}

static WINDOW: Window = Window {
    state: Mutex::new(WindowState {
        held: 0,
        generation: 0,
        waiting: 0,
    }),
    changed: Condvar::new(),
};

impl Window {
    /// Hold `len` more bytes if they fit, or in any case with `force`; true when held.
    fn take(&self, len: usize, force: bool) -> bool {
        let mut state = lock(&self.state);
        let admitted = force || state.held + len <= REORDER_WINDOW;
        if admitted {
            state.held += len;
        }
        admitted
    }

    fn give(&self, len: usize) {
        let mut state = lock(&self.state);
        state.held -= len;
        state.generation += 1;
        if state.waiting > 0 {
            self.changed.notify_all();
        }
    }

    fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    /// Wait until a release after `seen`, or until `deadline`; false when the deadline passed.
    fn wait_release(&self, seen: u64, deadline: Instant) -> bool {
        let mut state = lock(&self.state);
        state.waiting += 1;
        while state.generation == seen {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.waiting -= 1;
        state.generation != seen
    }
}

/// Disjoint byte intervals `start -> end` (end exclusive), merged when they touch.
#[derive(Default)]
pub struct Intervals(BTreeMap<u64, u64>);

impl Intervals {
    pub fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        if let Some((&before, &before_end)) = self.0.range(..=start).next_back() {
            if before_end >= start {
                start = before;
                end = end.max(before_end);
            }
        }
        let touching: Vec<u64> = self.0.range(start..=end).map(|(&s, _)| s).collect();
        for key in touching {
            if let Some(later_end) = self.0.remove(&key) {
                end = end.max(later_end);
            }
        }
        self.0.insert(start, end);
    }

    /// The end of the interval that holds byte `at`, if one does.
    fn covering(&self, at: u64) -> Option<u64> {
        self.0
            .range(..=at)
            .next_back()
            .and_then(|(_, &end)| (end > at).then_some(end))
    }

    /// How many bytes of `start..end` lie in the intervals.
    fn overlap(&self, start: u64, end: u64) -> u64 {
        self.0
            .range(..end)
            .map(|(&s, &e)| e.min(end).saturating_sub(s.max(start)))
            .sum()
    }

    fn end(&self) -> u64 {
        self.0.values().next_back().copied().unwrap_or(0)
    }
}

/// What the ordering thread does next.
enum Step {
    /// Hash these bytes of a held chunk from `skip` on.
    Held { bytes: ChunkBytes, skip: usize },
    /// Read `len` bytes at `offset` back from the file and hash them.
    ReadBack { offset: u64, len: u64 },
    /// Nothing is ready now (send what is gathered, then wait).
    Idle,
    /// Every byte up to the target is hashed.
    Done,
    /// Cancelled, or a stage failed.
    Stop,
    /// The file was to be complete, but has no bytes at this offset.
    Gap(u64),
}

/// The in-order state of one sink.
pub struct Order {
    /// Bytes before this offset are handed to the stages.
    frontier: u64,
    /// Where `finish` wants the frontier; `None` until then.
    target: Option<u64>,
    /// No more holding (the ordering thread ended or was cancelled).
    stopped: bool,
    cancelled: bool,
    held: BTreeMap<u64, ChunkBytes>,
    held_bytes: usize,
    window: usize,
    written: Intervals,
    resumed: Intervals,
    read_back: u64,
    resumed_bytes: u64,
}

impl Order {
    fn release(&mut self, len: usize) {
        self.held_bytes -= len;
        WINDOW.give(len);
    }

    fn hold(&mut self, offset: u64, bytes: ChunkBytes) {
        self.held_bytes += bytes.len();
        if let Some(replaced) = self.held.insert(offset, bytes) {
            self.release(replaced.len());
        }
    }

    /// Whether the ordering thread has bytes at the frontier to consume.
    fn progressing(&self) -> bool {
        self.held
            .first_key_value()
            .is_some_and(|(&offset, _)| offset <= self.frontier)
            || self.written.covering(self.frontier).is_some()
    }

    fn release_all(&mut self) {
        let held = std::mem::take(&mut self.held);
        if self.held_bytes > 0 {
            WINDOW.give(self.held_bytes);
            self.held_bytes = 0;
        }
        drop(held);
    }

    /// The next bytes at the frontier: a held chunk (trimmed to the frontier) or a span on disk.
    fn take_next(&mut self) -> Option<Step> {
        while let Some(entry) = self.held.first_entry() {
            let offset = *entry.key();
            if offset > self.frontier {
                break;
            }
            let bytes = entry.remove();
            self.release(bytes.len());
            let end = offset + bytes.len() as u64;
            if end > self.frontier {
                let skip = usize::try_from(self.frontier - offset).unwrap_or(usize::MAX);
                self.frontier = end;
                return Some(Step::Held { bytes, skip });
            }
        }
        let on_disk_end = self.written.covering(self.frontier)?;
        let next_held = self.held.first_key_value().map_or(u64::MAX, |(&k, _)| k);
        let offset = self.frontier;
        let end = on_disk_end.min(next_held).min(offset + READ_BACK_STEP);
        let resumed = self.resumed.overlap(offset, end);
        self.resumed_bytes += resumed;
        self.read_back += end - offset - resumed;
        self.frontier = end;
        Some(Step::ReadBack {
            offset,
            len: end - offset,
        })
    }
}

/// What `PartSink` and its ordering thread share.
pub struct Core {
    order: Mutex<Order>,
    changed: Condvar,
    pub shared: Arc<Shared>,
    budget: Arc<Budget>,
}

/// How far a sink got: `(hashed, read_back, resumed_bytes)`.
pub type Progress = (u64, u64, u64);

impl Core {
    /// A sink whose file already holds `written` (a resumed part); `window` caps its held bytes.
    pub fn new(written: &[(u64, u64)], window: usize) -> Self {
        let mut on_disk = Intervals::default();
        let mut resumed = Intervals::default();
        for &(start, end) in written {
            on_disk.insert(start, end);
            resumed.insert(start, end);
        }
        Self {
            order: Mutex::new(Order {
                frontier: 0,
                target: None,
                stopped: false,
                cancelled: false,
                held: BTreeMap::new(),
                held_bytes: 0,
                window,
                written: on_disk,
                resumed,
                read_back: 0,
                resumed_bytes: 0,
            }),
            changed: Condvar::new(),
            shared: Arc::new(Shared::default()),
            budget: Arc::new(Budget::default()),
        }
    }

    /// Record that `offset..offset + len(bytes)` is on disk, holding `bytes` for the hash when
    /// the window has room (always when they are at the frontier: they go on at once). Without
    /// room it waits while the ordering thread makes progress (until `timeout`: then the bytes
    /// come back, to look at signals and call again); when the ordering thread is starved (the
    /// bytes at the frontier are not written yet) it waits for them until `grace` has passed,
    /// then records the bytes unheld (they are read back later): a connection a moment late
    /// with the frontier's bytes costs no read-back, one that stalls costs no deadlock.
    pub fn place(
        &self,
        offset: u64,
        bytes: ChunkBytes,
        timeout: Duration,
        grace: Duration,
    ) -> Result<(), ChunkBytes> {
        let started = Instant::now();
        let deadline = started + timeout;
        let starved_until = started + grace.min(timeout);
        let end = offset + bytes.len() as u64;
        loop {
            let (seen, until) = {
                let mut order = lock(&self.order);
                let at_frontier = offset <= order.frontier;
                let hold = !order.stopped
                    && end > order.frontier
                    && (at_frontier || order.held_bytes + bytes.len() <= order.window);
                if hold && WINDOW.take(bytes.len(), at_frontier) {
                    order.hold(offset, bytes);
                    self.wrote(&mut order, offset, end);
                    return Ok(());
                }
                let progressing = order.progressing();
                let gave_up = !progressing && Instant::now() >= starved_until;
                if order.stopped || end <= order.frontier || gave_up {
                    self.wrote(&mut order, offset, end);
                    return Ok(());
                }
                let until = if progressing { deadline } else { starved_until };
                (WINDOW.generation(), until)
            };
            if !WINDOW.wait_release(seen, until) && Instant::now() >= deadline {
                return Err(bytes);
            }
        }
    }

    /// Record `offset..end` as on disk without holding it.
    pub fn record(&self, offset: u64, end: u64) {
        let mut order = lock(&self.order);
        self.wrote(&mut order, offset, end);
    }

    fn wrote(&self, order: &mut Order, offset: u64, end: u64) {
        order.written.insert(offset, end);
        self.changed.notify_one();
    }

    pub fn progress(&self) -> Progress {
        let order = lock(&self.order);
        (order.frontier, order.read_back, order.resumed_bytes)
    }

    /// Ask the ordering thread to end once everything up to `size` (or, unknown, up to the end
    /// of what is written) is hashed.
    pub fn settle(&self, size: Option<u64>) {
        let mut order = lock(&self.order);
        order.target = Some(size.unwrap_or_else(|| order.written.end()));
        self.changed.notify_one();
    }

    /// Stop hashing and release every held chunk.
    pub fn cancel(&self) {
        let mut order = lock(&self.order);
        order.cancelled = true;
        order.stopped = true;
        order.release_all();
        self.changed.notify_one();
    }

    fn cancelled(&self) -> bool {
        lock(&self.order).cancelled
    }

    /// The next step; waits for one unless `may_wait` is false.
    fn next_step(&self, may_wait: bool) -> Step {
        let mut order = lock(&self.order);
        loop {
            if order.cancelled || self.shared.failure().is_some() {
                return Step::Stop;
            }
            if let Some(step) = order.take_next() {
                return step;
            }
            if let Some(target) = order.target {
                return if order.frontier >= target {
                    Step::Done
                } else {
                    Step::Gap(order.frontier)
                };
            }
            if !may_wait {
                return Step::Idle;
            }
            order = self
                .changed
                .wait(order)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Add `bytes` (from `skip` on) to the batch being gathered, once the stages have room;
    /// false if cancelled meanwhile.
    fn gather(&self, batch: &mut Option<Batch>, bytes: ChunkBytes, skip: usize) -> bool {
        let len = bytes.len() - skip;
        while !self.budget.acquire_within(len, CANCEL_CHECK_INTERVAL) {
            if self.cancelled() {
                return false;
            }
        }
        batch
            .get_or_insert_with(|| Batch::new(Arc::clone(&self.budget)))
            .push_from(bytes, skip);
        true
    }

    /// Hand the gathered batch to the stages; false if a stage is gone.
    fn send(&self, pipeline: &Pipeline, batch: &mut Option<Batch>) -> bool {
        let sent = batch.take().is_none_or(|batch| pipeline.send(batch));
        if !sent {
            stage_gone(&self.shared);
        }
        sent
    }

    /// One step of the ordering thread; `Some(completed)` once it is to end.
    fn advance(&self, file: &File, pipeline: &Pipeline, batch: &mut Option<Batch>) -> Option<bool> {
        let gathered = match self.next_step(batch.is_none()) {
            Step::Held { bytes, skip } => self.gather(batch, bytes, skip),
            Step::ReadBack { offset, len } => match read_at(file, offset, len) {
                Ok(bytes) => self.gather(batch, ChunkBytes::Owned(bytes), 0),
                Err(err) => {
                    self.shared.fail(Failure::Io(Arc::new(err)));
                    false
                }
            },
            Step::Idle => self.send(pipeline, batch),
            Step::Done => return Some(true),
            Step::Stop => false,
            Step::Gap(offset) => {
                self.shared.fail(Failure::Gap(offset));
                false
            }
        };
        if !gathered {
            return Some(false);
        }
        let full = batch
            .as_ref()
            .is_some_and(|batch| batch.len() >= BATCH_BYTES);
        (full && !self.send(pipeline, batch)).then_some(false)
    }
}

fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Box<[u8]>> {
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut bytes = vec![0u8; len].into_boxed_slice();
    file.read_exact_at(&mut bytes, offset)?;
    Ok(bytes)
}

/// The ordering thread: feed the file to the stages in order until `settle` (or a failure, or
/// `cancel`), then close the stages and return what they computed.
pub fn run_ordering(core: &Core, file: &File, pipeline: Pipeline) -> Outcome {
    let mut batch = None;
    let completed = loop {
        if let Some(completed) = core.advance(file, &pipeline, &mut batch) {
            break completed && core.send(&pipeline, &mut batch);
        }
    };
    drop(batch);
    let mut order = lock(&core.order);
    order.stopped = true;
    order.release_all();
    drop(order);
    if completed {
        pipeline.close(&core.shared)
    } else {
        pipeline.cancel(&core.shared)
    }
}
