//! A cap on the guest's linear memory.
//!
//! `wasmtime-provider` 2.19 owns the wasmtime `Store` and exposes no `ResourceLimiter`, so
//! the cap is enforced one level lower: the engine gets a [`MemoryCreator`] whose memories
//! refuse to grow past the cap (`memory.grow` then returns -1, as with a limiter) and raise a
//! thread-local flag the runtime reads to tell "memory cap exhausted" apart from an ordinary trap (a Rust
//! guest aborts with `unreachable` when an allocation fails).
//!
//! The memories are plain anonymous mappings laid out the way wasmtime asks for: the whole
//! reservation plus the guard region is mapped inaccessible up front, and only the accessible
//! prefix is made readable and writable as the memory grows, so the compiled code keeps its
//! bounds-check elision.

use std::cell::Cell;
use std::sync::Arc;
use wasmtime_provider::wasmtime::{self, LinearMemory, MemoryCreator, MemoryType};

thread_local! {
    /// Set when a memory was refused growth on this thread. Growth and instantiation run on
    /// the thread that calls the guest, so the flag is right even when threads share an engine.
    static EXHAUSTED: Cell<bool> = const { Cell::new(false) };
}

/// Clear the flag (before a guest call).
pub fn reset_exhausted() {
    EXHAUSTED.with(|f| f.set(false));
}

/// Whether a memory was refused growth on this thread since the last reset.
pub fn exhausted() -> bool {
    EXHAUSTED.with(Cell::get)
}

fn set_exhausted() {
    EXHAUSTED.with(|f| f.set(true));
}

/// Creates linear memories that never exceed `cap` bytes.
pub struct CappedMemoryCreator {
    cap: usize,
}

impl CappedMemoryCreator {
    pub fn new(cap: usize) -> CappedMemoryCreator {
        CappedMemoryCreator { cap }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| *s > 0)
        .unwrap_or(4096)
}

fn round_up(n: usize, page: usize) -> Option<usize> {
    n.checked_add(page - 1).map(|n| n / page * page)
}

// SAFETY: every memory is a private mapping of `reserved + guard` bytes that stays at the same
// address for its whole life; `byte_size` bytes from the base are readable and writable and
// zero-filled when first exposed (fresh anonymous pages), the rest is PROT_NONE.
unsafe impl MemoryCreator for CappedMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if minimum > self.cap {
            set_exhausted();
            return Err(format!(
                "the module needs {minimum} bytes of linear memory, over the cap of {} bytes",
                self.cap
            ));
        }
        let page = page_size();
        let limit = maximum.map_or(self.cap, |m| m.min(self.cap));
        let reserved = match reserved_size_in_bytes {
            Some(r) => r,
            None => round_up(limit, page).ok_or("memory size overflow")?,
        };
        let total = reserved
            .checked_add(guard_size_in_bytes)
            .ok_or("memory reservation overflow")?;
        // SAFETY: a fresh anonymous mapping; the result is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "cannot reserve {total} bytes for linear memory: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut memory = CappedMemory {
            base: base.cast(),
            total,
            reserved,
            size: 0,
            accessible: 0,
            limit,
            page,
        };
        memory.grow_to(minimum).map_err(|e| e.to_string())?;
        Ok(Box::new(memory))
    }
}

struct CappedMemory {
    base: *mut u8,
    total: usize,
    reserved: usize,
    size: usize,
    /// Bytes from `base` currently readable and writable (page-rounded `size`).
    accessible: usize,
    limit: usize,
    page: usize,
}

// SAFETY: the mapping is owned by this value and only touched through `&mut self` or by the
// guest code of the store that owns it.
unsafe impl Send for CappedMemory {}
// SAFETY: as above; `&self` methods only read plain fields.
unsafe impl Sync for CappedMemory {}

// SAFETY: see `CappedMemoryCreator`: the base never moves and `byte_capacity` is the
// reservation wasmtime asked for.
unsafe impl LinearMemory for CappedMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.reserved
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.limit || new_size > self.reserved {
            set_exhausted();
            return Err(wasmtime::format_err!(
                "linear memory cap of {} bytes reached (asked for {new_size})",
                self.limit
            ));
        }
        let wanted = round_up(new_size, self.page)
            .ok_or_else(|| wasmtime::format_err!("memory size overflow"))?;
        if wanted > self.accessible {
            // SAFETY: the range lies inside our own mapping (wanted <= reserved < total).
            let rc = unsafe {
                libc::mprotect(
                    self.base.add(self.accessible).cast(),
                    wanted - self.accessible,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            self.accessible = wanted;
        }
        self.size = self.size.max(new_size);
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for CappedMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new_memory`.
        unsafe {
            libc::munmap(self.base.cast(), self.total);
        }
    }
}

/// Install the cap on an engine configuration; [`exhausted`] reports refused growth.
pub fn install(config: &mut wasmtime::Config, cap: usize) {
    config.with_host_memory(Arc::new(CappedMemoryCreator::new(cap)));
    // Copy-on-write memory images need wasmtime's own mmap memories.
    config.memory_init_cow(false);
}
