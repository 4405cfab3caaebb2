//! glibc malloc tuning, set once at start: keep freed memory at the top of the heap
//! instead of handing it back to the kernel and faulting it in again per SSH packet.
//!
//! libssh2 allocates every received packet's payload (up to 32 KiB) and frees it once the
//! pump has sent it on or copied it out. With glibc's defaults the free often leaves more than 128 KiB
//! free at the top of the heap, which glibc returns to the kernel (`brk`, or
//! `MADV_DONTNEED` in a thread's arena); the next packet's allocation takes the pages back
//! and the kernel zero-fills each one on first touch. Measured in bulk relay -> target with
//! aes256-gcm (`perf stat -e page-faults` on the connector, four turns each): 2,400-9,800
//! page faults per GB with the defaults, 0-180 with these settings, and the brk calls gone.
//!
//! What it costs: up to `TRIM_THRESHOLD` of freed memory may stay resident per arena after
//! a burst. Other C libraries (musl) have no such knobs; there this does nothing.

/// Free memory at the top of a heap is returned to the kernel only above this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 4 * 1024 * 1024;
/// Extra room taken whenever a heap grows, and kept when it shrinks.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 1024 * 1024;
/// Setting either value above turns off glibc's adaptive mmap threshold; this keeps
/// buffers up to 512 KiB (the pump's 256 KiB read buffer, a stashed partial write) in
/// the heap instead of a fresh mmap each time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 512 * 1024;

/// Applies the settings above; call before any thread starts. Returns false when the C
/// library refused one (nothing else changes: the defaults stay in force).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_heap_top() -> bool {
    let settings = [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_TOP_PAD, TOP_PAD),
    ];
    settings
        .iter()
        // SAFETY: mallopt only sets allocator parameters; it takes plain integers and is
        // called before any other thread exists.
        .all(|&(param, value)| unsafe { libc::mallopt(param, value) } == 1)
}

/// Other C libraries: nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_heap_top() -> bool {
    true
}
