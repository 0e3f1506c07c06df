//! [`EmberAllocator`]: the global allocator of Ember programs (installed
//! by `ember-driver` unless its `mimalloc` feature is off). Small blocks
//! come from mimalloc, large ones from the system allocator.
//!
//! Why split by size: records are mostly small, short-lived blocks (a
//! word, a key, a line), allocated in one batch and freed in the next.
//! glibc keeps only 7 freed blocks per size in its per-thread cache, so a
//! batch of 64 goes through its slower shared bins; mimalloc's per-thread
//! free lists serve them ~20% faster on a word count. Large blocks
//! (volumes, aggregation tables, spill buffers) are another matter:
//! glibc hands each one back to the kernel as soon as it is freed, while
//! mimalloc keeps freed pages a while for reuse, and a job under a tight
//! memory budget then peaks well above the budget (594 against 517 MiB in
//! the memory bench). Splitting keeps both: small blocks are fast, large
//! ones are returned at once.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at most this many bytes come from mimalloc (its "small"
/// size classes); larger ones from the system allocator.
pub const SMALL_BLOCK_MAX: usize = 1024;

/// mimalloc for blocks of up to [`SMALL_BLOCK_MAX`] bytes, the system
/// allocator for larger ones.
pub struct EmberAllocator;

fn is_small(size: usize) -> bool {
    size <= SMALL_BLOCK_MAX
}

// SAFETY: every block is freed (or resized) by the allocator that made
// it. `GlobalAlloc` callers must pass `dealloc` and `realloc` the layout
// the block was allocated with, so `layout.size()` picks the same side as
// at allocation; a `realloc` that crosses SMALL_BLOCK_MAX allocates on the
// new side, copies the bytes both blocks hold, and frees the old block on
// its own side. Both allocators honour the alignment they are given.
unsafe impl GlobalAlloc for EmberAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_small(layout.size()) {
            // SAFETY: the caller's contract (non-zero size) passes through.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_small(layout.size()) {
            // SAFETY: as in `alloc`.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_small(layout.size()) {
            // SAFETY: a block of this layout came from mimalloc (see the
            // impl's SAFETY comment).
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: a block of this layout came from the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_small(layout.size()), is_small(new_size)) {
            // SAFETY: same side as the allocation; the caller's contract
            // (valid new size) passes through.
            (true, true) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            // SAFETY: as above.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: `new_size` with the old alignment is a valid
                // layout by `realloc`'s contract.
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                // SAFETY: new_size is non-zero by `realloc`'s contract.
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks hold at least the smaller size
                    // and are distinct allocations; the old block is live
                    // until the dealloc below, with its own layout.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `len` bytes at `p` with a pattern keyed by `seed`.
    fn fill(p: *mut u8, len: usize, seed: u8) {
        for i in 0..len {
            // SAFETY: `p` points to a live block of at least `len` bytes.
            unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    /// Whether the first `len` bytes at `p` still hold `fill`'s pattern.
    fn holds(p: *const u8, len: usize, seed: u8) -> bool {
        // SAFETY: `p` points to a live block of at least `len` bytes.
        (0..len).all(|i| unsafe { p.add(i).read() } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn blocks_on_both_sides_keep_their_bytes_through_every_resize() {
        let a = EmberAllocator;
        // Growing and shrinking within each side and across the boundary,
        // at several alignments.
        let sizes = [
            1,
            24,
            SMALL_BLOCK_MAX,
            SMALL_BLOCK_MAX + 1,
            64 << 10,
            4 << 20,
            SMALL_BLOCK_MAX - 1,
            8,
        ];
        for align in [1, 8, 64, 4096] {
            let mut layout = Layout::from_size_align(sizes[0], align).expect("layout");
            // SAFETY: non-zero size.
            let mut p = unsafe { a.alloc(layout) };
            assert!(!p.is_null());
            fill(p, layout.size(), 7);
            for &next in &sizes[1..] {
                // SAFETY: `p` is live with `layout`; `next` is non-zero.
                p = unsafe { a.realloc(p, layout, next) };
                assert!(!p.is_null(), "realloc {} -> {next}", layout.size());
                assert_eq!(
                    p as usize % align,
                    0,
                    "alignment {align} after resize to {next}"
                );
                let kept = layout.size().min(next);
                assert!(
                    holds(p, kept, 7),
                    "bytes lost resizing {} -> {next}",
                    layout.size()
                );
                layout = Layout::from_size_align(next, align).expect("layout");
                fill(p, next, 7);
            }
            // SAFETY: `p` is live with `layout`.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_on_both_sides() {
        let a = EmberAllocator;
        for size in [16, SMALL_BLOCK_MAX, SMALL_BLOCK_MAX + 1, 1 << 20] {
            let layout = Layout::from_size_align(size, 16).expect("layout");
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc_zeroed(layout) };
            assert!(!p.is_null());
            // SAFETY: `p` is a live block of `size` bytes.
            assert!(
                (0..size).all(|i| unsafe { p.add(i).read() } == 0),
                "size {size}"
            );
            // SAFETY: `p` is live with `layout`.
            unsafe { a.dealloc(p, layout) };
        }
    }
}
