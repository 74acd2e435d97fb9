//! The `sightline` binary: the built-in components, and the command line of [`sightline`].

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: batches free many small allocations from another
/// thread than allocated them, where glibc spends a quarter of the CPU (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match sightline::default_registry() {
        Ok(registry) => sightline::main_with(registry),
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::from(1)
        }
    }
}
