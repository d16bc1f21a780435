#!/usr/bin/env bash
# The whole test suite: install dependencies, formatting, lints, every test. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
