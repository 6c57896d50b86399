# Sourced by the scripts: the cargo target directory lives outside the clone,
# so a fresh clone (and CI) reuses the RocksDB build instead of redoing it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamjob-target}"

# Builds the release `streamjob` and prints its path (for the bench scripts).
release_streamjob() {
  cargo build --release -q -p streamjob-runtime
  echo "$CARGO_TARGET_DIR/release/streamjob"
}
