#!/usr/bin/env bash
# The main job: install dependencies, build, and run `locus lab` on its built-in scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bin locus
exec "${CARGO_TARGET_DIR:-target}/release/locus" lab "$@"
