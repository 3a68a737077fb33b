#!/usr/bin/env bash
# Builds the V8 archive behind runtime's `ptrcomp` feature, with ../shared/v8/build/build-v8.sh
# (the recipe that rebuilt the default archive from the v8 crate's own sources; 30-45 minutes
# on 2 cores, as root). This folder holds what isobar wants on top of it:
# - ptrcomp.gn: GN args beyond the recipe's. Pointer compression comes from SUFFIX=_ptrcomp;
#   multiple cages (no shared cage) make isolate groups possible, one 4 GB cage each;
#   use_allocator_shim=false keeps V8's malloc shim from colliding with mimalloc's override.
# - patches/: 0001 binds isolate groups for runtime/src/cage.rs (the crate binds none),
#   0002 and 0003 make four per-isolate caches 4x smaller (the three stub caches, and the code
#   lookup caches of stack walks): V8 makes them whole in every isolate, ~290 KB in all.
# Output: $WORK/OUT/librusty_v8_ptrcomp_release_x86_64-unknown-linux-gnu.a.gz, the archive to
# put beside the default one in ../shared/v8/ (its bindings file is the same as the default's).
# Built here on 2026-12-04 in 26 minutes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe=${RECIPE:-$here/../../../shared/v8/build}
export WORK=${WORK:-$HOME/v8-build-ptrcomp}
# The recipe's folder may be read-only, and its script reads its helpers beside itself.
mkdir -p "$WORK"
rm -rf "$WORK/recipe" && cp -r "$recipe" "$WORK/recipe"
# Precompiled headers built with other args or patches would not match.
rm -f "$WORK"/pch/*.pch
SUFFIX=_ptrcomp EXTRA_ARGS=$(cat "$here/ptrcomp.gn") PATCHES="$here/patches" \
  bash "$WORK/recipe/build-v8.sh"
