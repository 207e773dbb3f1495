#!/usr/bin/env bash
# Builds the `raftsched` binary of an older commit (default cde735c, the last format-0 build) in a
# git worktree and prints the binary's path. Cached: a second run with the binary present only
# prints it. The cache is $RAFTSCHED_OLD_BUILD_CACHE (default ~/.cache/raftsched-old-builds); its
# cargo target dir is reused across commits so only the changed crates rebuild.
#
#   scripts/old-build.sh [--release] [COMMIT]   ->   ~/.cache/raftsched-old-builds/cde735c/raftsched
# (--release: an optimised build, for benchmarks: .../cde735c/release/raftsched)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
if [ "${1:-}" = --release ]; then
    profile=release
    shift
fi
commit="${1:-cde735c}"
cache="${RAFTSCHED_OLD_BUILD_CACHE:-$HOME/.cache/raftsched-old-builds}"
full=$(git rev-parse --verify "$commit^{commit}")
short=${full:0:7}
bin="$cache/$short/raftsched"
[ "$profile" = release ] && bin="$cache/$short/release/raftsched"
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$(dirname "$bin")"
worktree="$cache/worktree-$short"
if [ ! -d "$worktree" ]; then
    git worktree prune
    git worktree add --detach "$worktree" "$full" >&2
fi
(
    cd "$worktree"
    # No system protoc, as in .ci/run: the old commit builds with cargo alone too.
    PROTOC=/nonexistent RAFTSCHED_BUILD_COMMIT="$full" \
        cargo build -j"${CARGO_BUILD_JOBS:-2}" --bin raftsched --target-dir "$cache/target" \
            $([ "$profile" = release ] && echo --release) >&2
)
cp "$cache/target/$profile/raftsched" "$bin.tmp"
mv "$bin.tmp" "$bin"
git worktree remove --force "$worktree" >&2 || true
echo "$bin"
