//! The broker's global allocator: the system allocator, except that very
//! large requests are served by `mmap(MAP_NORESERVE)`.
//!
//! Why: the generated protocol decoders size vectors from the element count
//! a request declares (`Vec::with_capacity(n)`) before reading the
//! elements. A 20-byte request declaring two billion elements would make the
//! system allocator refuse hundreds of gigabytes, and Rust aborts the
//! process on a refused allocation. A `MAP_NORESERVE` mapping only reserves
//! address space; the decoder then fails on the missing bytes and the
//! mapping is released untouched, so the bad request costs a closed
//! connection instead of the broker. Legitimate allocations are far below
//! the threshold (requests are bounded by socket.request.max.bytes).

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped directly.
const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

/// System allocator with lazily backed huge allocations.
pub struct BrokerAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

// SAFETY: every block is released by the same mechanism that produced it,
// decided by the layout, which the caller passes back unchanged.
unsafe impl GlobalAlloc for BrokerAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: size is non-zero.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous pages are zero.
            // SAFETY: size is non-zero.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map` with this size.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid layout for the new size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, free the old block.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_lazy_and_released() {
        let a = BrokerAllocator;
        let layout = Layout::from_size_align(64 << 30, 8).expect("layout");
        // SAFETY: test of the allocator contract with a valid layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "64 GiB of address space is reserved lazily");
            *p = 7;
            assert_eq!(*p, 7);
            let q = a.realloc(p, layout, 16);
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(16, 8).expect("layout"));
            let small = Layout::from_size_align(100, 8).expect("layout");
            let s = a.alloc_zeroed(small);
            assert_eq!(*s.add(99), 0);
            let s = a.realloc(s, small, 1000);
            a.dealloc(s, Layout::from_size_align(1000, 8).expect("layout"));
        }
    }
}
