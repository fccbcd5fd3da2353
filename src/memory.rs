//! How the allocator gives memory back (the binary uses mimalloc as its allocator).

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in its header; the crate does
/// not name it). The test below checks the number against the option's default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the system immediately instead of after mimalloc's default
/// delay (a second), so a long export's memory is what it holds, not what it once held.
pub fn return_freed_memory_at_once() {
    // SAFETY: sets one allocator option; called once at start, before other threads exist.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_mimallocs_purge_delay() {
        // mimalloc 3's default for this option (`options.c`): 1,000 ms.
        // SAFETY: reads one allocator option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 1000);
    }
}
