//! The `sightline` binary: the built-in components, and the command line of [`sightline`].

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: batches free many small allocations from another
/// thread than allocated them, where glibc spends a quarter of the CPU (see BENCHMARKS.md).
/// Built without transparent huge pages (`no_thp`): with them a partly used 2 MiB page
/// counts whole in resident memory, which raised the peak by 10-30 MiB at full load and made
/// it vary from run to run (BENCHMARKS.md, "Memory at saturation").
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
