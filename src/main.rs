//! The `sightline` binary: the built-in components, and the command line of [`sightline`].

use std::process::ExitCode;

fn main() -> ExitCode {
    match sightline::default_registry() {
        Ok(registry) => sightline::main_with(registry),
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::from(1)
        }
    }
}
