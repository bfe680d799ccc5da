//! The `motif` command-line tool.

fn main() {
    std::process::exit(motif::cli::main());
}
