//! One way to take a lock. A panic while a lock is held leaves the data as the panicking
//! code left it; every lock here guards counts, tables and queues that stay usable (each
//! update is a single step), so the poison is dropped and the server keeps serving
//! instead of panicking in every later caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, poisoned or not.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
