//! The binary's global allocator: glibc's malloc, except for small blocks aligned to 128 bytes.
//!
//! tokio aligns every task and every socket registration to 128 bytes (a cache line pair). glibc
//! serves such a request with `memalign`, which takes `size + 128 + 32` bytes and gives the
//! leading and trailing scraps back as free fragments that only small allocations can reuse; an
//! idle connection makes none. massif and RSS figures on 10,000 idle gateway connections showed
//! 1.4 KiB each for 768 bytes of live tasks and registrations. Here those blocks come from
//! 64 KiB slabs carved into 128-byte-aligned pieces of their size class, kept on free lists: a
//! connection costs what it uses. The slabs are kept for reuse, not handed back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

const ALIGN: usize = 128;
/// Size classes: 128, 256, … , 1024 bytes.
const CLASSES: usize = 8;
const SLAB: usize = 64 * 1024;

pub struct TroveAlloc;

/// Free blocks of each class, as an intrusive list: a free block's first word points to the
/// next. Guarded by a mutex, which neither allocates nor is taken on any other path.
struct FreeLists([*mut u8; CLASSES]);

// SAFETY: the pointers are only read or written under the mutex.
unsafe impl Send for FreeLists {}

static FREE: Mutex<FreeLists> = Mutex::new(FreeLists([ptr::null_mut(); CLASSES]));

fn class(layout: Layout) -> Option<usize> {
    (layout.align() == ALIGN && layout.size() > 0 && layout.size() <= ALIGN * CLASSES).then(|| layout.size().div_ceil(ALIGN) - 1)
}

unsafe impl GlobalAlloc for TroveAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded as given.
            return unsafe { System.alloc(layout) };
        };
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        if free.0[c].is_null() {
            // A new slab for this class, carved into blocks on the free list.
            let size = (c + 1) * ALIGN;
            // SAFETY: a valid, non-zero layout.
            let slab = unsafe { System.alloc(Layout::from_size_align_unchecked(SLAB, ALIGN)) };
            if slab.is_null() {
                return ptr::null_mut();
            }
            let n = SLAB / size;
            for i in (0..n).rev() {
                // SAFETY: block i lies inside the slab and is aligned to 128 (size is a multiple).
                unsafe {
                    let b = slab.add(i * size);
                    (b as *mut *mut u8).write(free.0[c]);
                    free.0[c] = b;
                }
            }
        }
        let b = free.0[c];
        // SAFETY: `b` is a free block of this class; its first word is the next free block.
        free.0[c] = unsafe { (b as *mut *mut u8).read() };
        b
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: allocated by `System` with this layout.
            return unsafe { System.dealloc(p, layout) };
        };
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `p` is a block of this class no longer in use; it joins the free list.
        unsafe { (p as *mut *mut u8).write(free.0[c]) };
        free.0[c] = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(128))]
    struct Aligned([u8; 300]);

    #[test]
    fn aligned_blocks_are_aligned_distinct_reused_and_keep_their_contents() {
        // The binary's allocator serves this test too: boxes of an over-aligned type take the
        // slab path, everything else glibc.
        let mut boxes: Vec<Box<Aligned>> = (0..2000u32).map(|i| Box::new(Aligned([(i % 251) as u8; 300]))).collect();
        let mut addrs: Vec<usize> = boxes.iter().map(|b| &**b as *const Aligned as usize).collect();
        assert!(addrs.iter().all(|a| a % 128 == 0));
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), 2000, "two live blocks share an address");
        for (i, b) in boxes.iter().enumerate() {
            assert!(b.0.iter().all(|&x| x == (i as u32 % 251) as u8), "block {i} was overwritten");
        }
        let freed: Vec<usize> = boxes.drain(1000..).map(|b| &*b as *const Aligned as usize).collect();
        let again: Vec<Box<Aligned>> = (0..1000).map(|_| Box::new(Aligned([7; 300]))).collect();
        let reused = again.iter().filter(|b| freed.contains(&(&***b as *const Aligned as usize))).count();
        assert!(reused > 900, "freed blocks are not reused: {reused} of 1000");
        for b in &boxes {
            assert_eq!(b.0[299], b.0[0]);
        }
    }

    #[test]
    fn classes() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class(l(1, 128)), Some(0));
        assert_eq!(class(l(128, 128)), Some(0));
        assert_eq!(class(l(129, 128)), Some(1));
        assert_eq!(class(l(512, 128)), Some(3));
        assert_eq!(class(l(1024, 128)), Some(7));
        assert_eq!(class(l(1025, 128)), None);
        assert_eq!(class(l(512, 64)), None);
        assert_eq!(class(l(512, 256)), None);
    }
}
