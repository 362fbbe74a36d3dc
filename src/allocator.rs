//! How memtrail asks glibc's allocator to keep its resident memory honest. A memory monitor's own
//! RSS is watched (by users, and by its own soak test), so memory it has freed should leave it:
//! one arena, so threads share free lists, and freed heap pages handed back after a request whose
//! working set is large.

/// glibc gives each thread that calls malloc an arena of its own (up to 8 per core), and memory
/// freed into one arena is not reused by another: API threads that come and go then leave free
/// but resident pages behind in several arenas, and a recorder's RSS under API load crept up for
/// minutes (bench/api-rss: 16.3 -> 17.8 MiB at 4 clients). One arena shares the free lists; the
/// recorder's threads allocate little, so the lock is uncontended. Call it before other threads start.
pub(crate) fn limit_arenas() {
    crate::sys::malloc_arena_max(1);
}

/// Hand freed heap pages back to the kernel. glibc's `free` returns only the top of the heap: a
/// status request's working set (SQLite's in-memory temp tables, 1-4 MiB) freed below a block
/// that lives on stays resident, so the RSS level stepped up by a megabyte now and then under API
/// load (the soak saw 24.9 -> 26.2 MiB). `malloc_trim(0)` releases the free pages inside the heap
/// too; it walks the free lists once (well under a millisecond at memtrail's size).
pub(crate) fn release_freed() {
    crate::sys::malloc_trim();
}
