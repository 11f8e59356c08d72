#!/usr/bin/env bash
# Builds the Tansu broker the Kafka tests run against: Tansu 0.6.0 from
# crates.io with SQLite storage (dynostore, libsql) and the patches in this
# directory applied to its crates (tansu-broker/*.patch to tansu-broker,
# tansu-storage/*.patch to tansu-storage), installed under
# $1 (default ~/.cache/dolbom/tansu-0.6.0-dolbom.5) as bin/tansu.
#
# tansu-storage/dynostore-fetch.patch mends two faults of the in-memory
# storage's (dynostore's) fetch:
# - it listed every batch object of a partition on every fetch, so a fetch
#   cost the length of the log: over `scenario town`'s week the monitor's lag
#   grew from ~0.1 s to 0.75-1.9 s while the log grew to ~9 GB, and the
#   deadline latency with it. The patch keeps each partition's batch offsets
#   in an index (made by one listing, kept by produce; a gap between the
#   batches a fetch reads lists again), as Kafka's offset index does.
# - a fetch from an offset inside a batch (a monitor resuming from its
#   snapshot's offset) answered with the *next* batch: the rest of the batch
#   was never read, and librdkafka, asking again from the same offset, got
#   the next batch over and over. Kafka answers with the batch holding the
#   offset, and the client skips what lies before it; so does the patch.
#   Found by services/dolbom/tests/broker_contract.rs (SQLite storage was
#   right all along).
#
# tansu-broker/coordinator.patch fixes three faults of Tansu 0.6.0's group coordinator
# that a broker pause or a killed member exposes:
# - a leader that is no longer a member: a member whose heartbeat arrives
#   later than the session timeout (the broker was paused or stalled) removes
#   itself while the group stays formed; librdkafka rejoins with a new member
#   id, and that join carries the old id into the forming group as its
#   leader. That leader never syncs, so every member is told "rebalance in
#   progress" forever, fresh processes too: the group's partitions go
#   unconsumed. The patch drops a leader that is not a member when a member
#   joins.
# - a join that is not a contact: a member rejoining after the pause kept its
#   contact time from before it and was dropped for a missed heartbeat
#   seconds after it joined. The patch counts a join as a contact.
# - a sync without a leader: when the leader (a killed process) is dropped
#   for its missed heartbeat between a follower's join and its sync, the
#   follower's sync (which carries no assignments) formed the group with no
#   assignments at all, and every partition went unconsumed while the
#   member heartbeated happily. The patch sends such a member to rejoin,
#   where it becomes the leader.
# Found by services/dolbom/tests/monitor_kafka.rs: t9 (a paused broker;
# unpatched, about one run in five never got its partitions back) and the
# tests that SIGKILL a monitor (the third, once the first two were fixed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${1:-$HOME/.cache/dolbom/tansu-0.6.0-dolbom.5}"
work="${TANSU_BUILD_DIR:-/var/tmp/tansu-dolbom-src}"
rm -rf "$work"
mkdir -p "$work/fetch/src"

# Fetch the crates' sources through cargo (the registry is all we reach).
echo 'fn main() {}' > "$work/fetch/src/main.rs"
cat > "$work/fetch/Cargo.toml" <<'TOML'
[package]
name = "fetch-tansu"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tansu = { version = "=0.6.0", features = ["dynostore", "libsql"] }
tansu-broker = "=0.6.0"
TOML
cargo fetch --manifest-path "$work/fetch/Cargo.toml" >/dev/null
registry="$(dirname "$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name tansu-broker-0.6.0 | head -1)")"
[ -d "$registry/tansu-0.6.0" ] || { echo "tansu 0.6.0 sources not found" >&2; exit 1; }

cp -r "$registry/tansu-0.6.0" "$work/tansu"
cat >> "$work/tansu/Cargo.toml" <<'TOML'

[patch.crates-io]
TOML
for crate in tansu-broker tansu-storage; do
  cp -r "$registry/$crate-0.6.0" "$work/$crate"
  for p in "$here/$crate"/*.patch; do
    patch -d "$work/$crate" -p1 --forward < "$p"
  done
  echo "$crate = { path = \"../$crate\" }" >> "$work/tansu/Cargo.toml"
done

# Tansu's own Cargo.lock pins everything; cargo changes only the patched
# crate's entry (`cargo install` would ignore the lock file).
target="${TANSU_TARGET_DIR:-/var/tmp/tansu-target}"
cargo build --release --manifest-path "$work/tansu/Cargo.toml" \
  --features dynostore,libsql --target-dir "$target" --bin tansu
mkdir -p "$root/bin"
install -m 0755 "$target/release/tansu" "$root/bin/tansu"
echo "$root/bin/tansu"
