//! `aergofs bench`: AergoFS vs one file per blob vs RocksDB, plus cold reads vs raw O_DIRECT.

use anyhow::Result;

/// Benchmark options.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Number of blobs.
    #[arg(long, default_value_t = 1_048_576)]
    pub n: usize,
    /// Concurrent writers/readers.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Scratch directory (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// Runs the benchmark.
pub async fn run(_a: BenchArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
