//! Locking a class's `Mutex` without ever blocking other Python threads on it.

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use pyo3::Python;

/// Lock `mutex`, blocking. Call this only with the GIL released (inside `Python::detach`).
///
/// A poisoned lock is recovered rather than turned into a second panic: nothing in this crate
/// panics while holding a lock, and a SHA-256 state or an open file stays usable regardless.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Run `f` on the locked value; if another thread holds the lock, wait for it with the GIL
/// released, so that a long hash or write elsewhere never stalls the interpreter.
pub fn with_locked<T, R, F>(py: Python<'_>, mutex: &Mutex<T>, f: F) -> R
where
    T: Send,
    R: Send,
    F: Send + FnOnce(&mut T) -> R,
{
    match mutex.try_lock() {
        Ok(mut guard) => f(&mut guard),
        Err(TryLockError::Poisoned(poisoned)) => f(&mut poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => py.detach(|| f(&mut lock(mutex))),
    }
}
