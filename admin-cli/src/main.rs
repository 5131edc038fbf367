//! `caracal`: the operators' CLI. Parses arguments (usage errors exit 2)
//! and hands them to the library, which picks the exit code.
#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc: per-thread free lists instead of glibc's arenas, whose
/// consolidation showed in the request path's profile (see
/// load-tests/results/2026-11-30-lifecycle-ab.md). The feature
/// `system-allocator` builds with the C allocator instead, for heap
/// profilers that see only malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    caracal_gateway::runtime::without_huge_pages();
    caracal_cli::main(caracal_cli::Cli::parse())
}
