#!/usr/bin/env bash
# The end-to-end benchmark: builds release binaries, then compares Sightline with the
# baseline forwarder in one run. Prints the markdown table recorded in BENCHMARKS.md.
#   bench/run.sh [--seconds N] [--rate SPANS_PER_S] [--concurrency N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sightline -p sightline-bench
exec target/release/sightline-bench --sightline target/release/sightline "$@"
