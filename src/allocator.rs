//! The guest's allocator: segregated free lists of power-of-two blocks over the system
//! allocator.
//!
//! A request builds and drops a few thousand small `serde_json::Value` nodes, strings and
//! vectors. wasi-libc's dlmalloc spends about as much time in `malloc`/`free` as the policy
//! spends on its own work (docs/performance-notes.md); here a small allocation is a pop from
//! (and a free a push onto) the list of its size class. Freed blocks are kept for reuse by
//! the same class and never coalesced: a policy instance repeats the same request shape, so
//! its high-water mark stays flat (the soak test in docs/reliability.md watches it).
//! Blocks larger than [`MAX_BLOCK`] go to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Smallest block (room for the free-list link and typical `String`s of a label key).
const MIN_SHIFT: u32 = 4;
/// Largest block served from the free lists; larger ones go to the system allocator.
pub const MAX_BLOCK: usize = 1 << MAX_SHIFT;
const MAX_SHIFT: u32 = 12;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Small blocks are carved from chunks of this size taken from the system allocator.
const CHUNK: usize = 64 << 10;

struct State {
    /// Head of each class's free list; a free block stores the next one in its first word.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    next: usize,
    end: usize,
}

/// Size-class allocator over `A`. Not thread-safe: it is only installed as the global
/// allocator on wasm32 without threads (see the bottom of this file); tests use it locally.
pub struct SizeClasses<A> {
    inner: A,
    state: UnsafeCell<State>,
}

impl<A> SizeClasses<A> {
    pub const fn new(inner: A) -> Self {
        SizeClasses {
            inner,
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                next: 0,
                end: 0,
            }),
        }
    }
}

/// The class of a layout, `None` when it is too large for the free lists. A block of class
/// `c` is `16 << c` bytes and aligned to its size, which covers any alignment up to it.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    if size > MAX_BLOCK {
        return None;
    }
    Some((size.next_power_of_two().trailing_zeros() - MIN_SHIFT) as usize)
}

fn block_size(class: usize) -> usize {
    1 << (class as u32 + MIN_SHIFT)
}

impl<A: GlobalAlloc> SizeClasses<A> {
    /// A fresh block of `class` from the current chunk, taking a new chunk when it is spent.
    ///
    /// # Safety
    /// The caller has exclusive access to `state`.
    #[cold]
    #[inline(never)]
    unsafe fn carve(&self, state: &mut State, class: usize) -> *mut u8 {
        let size = block_size(class);
        let mut start = state.next.next_multiple_of(size);
        if state.next == 0 || start + size > state.end {
            // The chunk is aligned to the largest block, so every block in it is aligned
            // to its own size. What is left of the old chunk is abandoned (at most 4 KiB).
            let chunk = self
                .inner
                .alloc(Layout::from_size_align_unchecked(CHUNK, MAX_BLOCK));
            if chunk.is_null() {
                return chunk;
            }
            state.next = chunk as usize;
            state.end = state.next + CHUNK;
            start = state.next;
        }
        state.next = start + size;
        start as *mut u8
    }
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for SizeClasses<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            return self.inner.alloc(layout);
        };
        let state = &mut *self.state.get();
        let head = state.free[c];
        if head.is_null() {
            self.carve(state, c)
        } else {
            state.free[c] = *(head as *mut *mut u8);
            head
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            return self.inner.dealloc(ptr, layout);
        };
        let state = &mut *self.state.get();
        *(ptr as *mut *mut u8) = state.free[c];
        state.free[c] = ptr;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        match (class(layout), class(new)) {
            // Still the same class: the block already fits.
            (Some(old), Some(c)) if c == old => ptr,
            (None, None) => self.inner.realloc(ptr, layout, new_size),
            _ => {
                let out = self.alloc(new);
                if !out.is_null() {
                    ptr::copy_nonoverlapping(ptr, out, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                out
            }
        }
    }
}

/// The policy's global allocator in the guest. wasm32 without the atomics feature has a single
/// thread, so the unsynchronized state cannot be reached concurrently.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod global {
    use super::SizeClasses;

    struct SingleThreaded(SizeClasses<std::alloc::System>);
    // SAFETY: see the module comment: there is no second thread on this target.
    unsafe impl Sync for SingleThreaded {}

    // Not inlined: at every allocation site of the policy that would add ~170 KB of code.
    unsafe impl std::alloc::GlobalAlloc for SingleThreaded {
        #[inline(never)]
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            self.0.alloc(layout)
        }
        #[inline(never)]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            self.0.dealloc(ptr, layout)
        }
        #[inline(never)]
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: std::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            self.0.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static GLOBAL: SingleThreaded = SingleThreaded(SizeClasses::new(std::alloc::System));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{Gen, SplitMix};
    use std::alloc::System;

    #[test]
    fn classes_cover_size_and_alignment() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class(l(1, 1)), Some(0));
        assert_eq!(class(l(16, 8)), Some(0));
        assert_eq!(class(l(17, 1)), Some(1));
        assert_eq!(class(l(8, 64)), Some(2));
        assert_eq!(class(l(4096, 8)), Some(8));
        assert_eq!(class(l(4097, 8)), None);
        assert_eq!(class(l(8, 8192)), None);
    }

    /// Random allocations, reallocations and frees: every live block keeps its own bytes,
    /// is aligned, and freed blocks are reused.
    #[test]
    fn blocks_never_overlap_and_are_reused() {
        let a = SizeClasses::new(System);
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut seed = SplitMix(0x9e37_79b9_7f4a_7c15);
        let mut g = Gen::new(&mut seed);
        let mut rand = |n: u64| g.below(n as usize) as u64;
        let check = |(p, l, fill): &(*mut u8, Layout, u8)| {
            assert_eq!(*p as usize % l.align(), 0);
            let bytes = unsafe { std::slice::from_raw_parts(*p, l.size()) };
            assert!(bytes.iter().all(|b| b == fill), "a block was overwritten");
        };
        for step in 0..20_000u32 {
            let fill = (step % 251) as u8;
            match rand(3) {
                0 | 1 if live.len() < 500 => {
                    let size = [1, 7, 16, 24, 100, 1000, 4096, 5000][rand(8) as usize];
                    let align = [1, 8, 16, 64][rand(4) as usize];
                    let l = Layout::from_size_align(size, align).unwrap();
                    let p = unsafe { a.alloc(l) };
                    assert!(!p.is_null());
                    unsafe { ptr::write_bytes(p, fill, size) };
                    live.push((p, l, fill));
                }
                2 if !live.is_empty() => {
                    let i = rand(live.len() as u64) as usize;
                    let (p, l, old) = live[i];
                    check(&live[i]);
                    let size = [3, 40, 700, 3000, 9000][rand(5) as usize];
                    let q = unsafe { a.realloc(p, l, size) };
                    assert!(!q.is_null());
                    let kept = unsafe { std::slice::from_raw_parts(q, l.size().min(size)) };
                    assert!(kept.iter().all(|b| *b == old), "realloc lost bytes");
                    unsafe { ptr::write_bytes(q, fill, size) };
                    live[i] = (q, Layout::from_size_align(size, l.align()).unwrap(), fill);
                }
                _ if !live.is_empty() => {
                    let i = rand(live.len() as u64) as usize;
                    let b = live.swap_remove(i);
                    check(&b);
                    unsafe { a.dealloc(b.0, b.1) };
                }
                _ => {}
            }
        }
        live.iter().for_each(check);
        let l = Layout::from_size_align(24, 8).unwrap();
        let p = unsafe { a.alloc(l) };
        unsafe { a.dealloc(p, l) };
        assert_eq!(
            unsafe { a.alloc(l) },
            p,
            "a freed block is handed out again"
        );
    }
}
