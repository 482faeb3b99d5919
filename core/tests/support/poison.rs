//! A poison-on-free global allocator for the review's loom test binaries (the same idea as
//! `std-timer/src/tests/loom.rs`): freed memory is overwritten with `0xA5` and kept out of reuse
//! for a while, so the loom atomics inside a freed heap node name no valid loom object and a
//! late access to one makes loom panic ("index out of bounds ... 11936128518282651045", i.e.
//! `0xA5A5A5A5A5A5A5A5`) instead of silently reading stale memory.
#![allow(unsafe_code)]

/// Overwrites freed memory and keeps the last [`QUARANTINE`] freed blocks from being reused.
pub(crate) struct PoisonOnFree;

const QUARANTINE: usize = 1 << 12;

type Block = (usize, usize, usize);

static FREED: std::sync::Mutex<(usize, [Block; QUARANTINE])> =
    std::sync::Mutex::new((0, [(0, 0, 0); QUARANTINE]));

// SAFETY: forwards to `System`; only writes to blocks that callers handed back, and hands
// each one to `System` exactly once, later.
unsafe impl std::alloc::GlobalAlloc for PoisonOnFree {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` is a block of `layout.size()` bytes that nobody may use any more.
        unsafe { ptr.write_bytes(0xA5, layout.size()) };
        let old = {
            let mut freed = FREED.lock().unwrap_or_else(|e| e.into_inner());
            let i = freed.0;
            freed.0 = (i + 1) % QUARANTINE;
            core::mem::replace(
                &mut freed.1[i],
                (ptr as usize, layout.size(), layout.align()),
            )
        };
        if old.0 != 0 {
            // SAFETY: a block freed earlier with this layout, in quarantine until now.
            unsafe {
                let layout = std::alloc::Layout::from_size_align_unchecked(old.1, old.2);
                std::alloc::System.dealloc(old.0 as *mut u8, layout);
            }
        }
    }
}

#[global_allocator]
static POISON_ON_FREE: PoisonOnFree = PoisonOnFree;
