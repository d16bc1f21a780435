//! Entry points of the fuzz targets (`fuzz_targets/`), one function per target; the main
//! workspace's `tests/fuzz_corpus.rs` replays the seed corpus through the same functions.

pub mod entries;
