//! The `motif` command-line tool.

/// mimalloc: the engine allocates and frees many small objects (event rows, buffer nodes),
/// often freed on another thread or in another order than allocated, where it is several
/// times cheaper than the system allocator. Built with its `override` feature, it is the
/// C libraries' `malloc` too (librdkafka's messages are allocated on its fetch thread and
/// freed on the pipeline's).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    motif::process::disable_transparent_huge_pages();
    std::process::exit(motif::cli::main());
}
