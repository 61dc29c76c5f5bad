//! Allocation counting (used by `alloc` and `footprint`; the cost elsewhere is two relaxed atomics).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting calls and bytes.
pub(crate) struct CountingAllocator;

/// Allocations (including reallocations) since the process started.
pub(crate) static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by those allocations.
pub(crate) static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes released (including the old blocks of reallocations).
pub(crate) static FREED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Highest live heap seen since the last [`reset_peak`].
pub(crate) static PEAK_LIVE: AtomicU64 = AtomicU64::new(0);

/// Counts an allocation of `size` bytes and raises the peak.
pub(crate) fn note_allocation(size: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let total = ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
    let live = total.saturating_sub(FREED_BYTES.load(Ordering::Relaxed));
    PEAK_LIVE.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        FREED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        note_allocation(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// (allocations, bytes) so far.
pub(crate) fn allocation_counters() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

/// Bytes allocated and not yet freed.
pub(crate) fn live_bytes() -> u64 {
    ALLOCATED_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(FREED_BYTES.load(Ordering::Relaxed))
}

/// Starts a new peak measurement; returns the live heap now.
pub(crate) fn reset_peak() -> u64 {
    let live = live_bytes();
    PEAK_LIVE.store(live, Ordering::Relaxed);
    live
}

/// Highest live heap since the last [`reset_peak`].
pub(crate) fn peak_bytes() -> u64 {
    PEAK_LIVE.load(Ordering::Relaxed)
}
