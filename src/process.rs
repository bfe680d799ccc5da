//! Settings of the host process, for binaries (motif's own and the benches) to apply at
//! start-up; a library embedding the engine leaves its process alone.

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing).
///
/// mimalloc asks the kernel for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), and
/// the first touch of each 2 MiB page then clears all of it, however little of it is used
/// — and again after mimalloc returns it. In `motif run` over a Kafka topic of 1M events
/// that was 18 % of the pipeline thread's samples (`clear_page_erms`, from 500–950 faults)
/// and 0.37–0.64 s of system time; with 4 KiB pages 0.15–0.18 s (docs/performance.md,
/// "Kafka: huge pages").
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours; a
    // kernel without it returns an error, which leaves things as they were.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
