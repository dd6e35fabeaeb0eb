#!/bin/sh
# Entry point of the single-container image (deploy/unraid/Dockerfile): checks that the data folder is
# writable, seeds it with weights baked into the image, fetches and verifies the served models (what is
# already there and intact is kept, so later starts need no network), then becomes `stash-vision serve`.
# Arguments go to `stash-vision serve`.
set -eu

data="${STASH_VISION_DATA_DIR:-/data}"
baked="${BAKED_MODELS_DIR:-/opt/stash-vision/models}"

if ! mkdir -p "$data" 2>/dev/null || ! touch "$data/.stash-vision-write-test" 2>/dev/null; then
    echo "error: $data is not writable by this container's user (uid $(id -u), gid $(id -g))." >&2
    echo "Give that user the host folder mapped to $data, e.g. on unRAID:" >&2
    echo "  chown -R $(id -u):$(id -g) /mnt/user/appdata/stash-vision" >&2
    exit 1
fi
rm -f "$data/.stash-vision-write-test"

# Baked weights (BAKE_MODELS=true at build time) are laid out like $data/models: <model>/<version>/.
# A version already in the data folder is left alone; `models fetch` verifies every file either way.
for version_dir in "$baked"/*/*/; do
    [ -d "$version_dir" ] || continue
    relative="${version_dir#"$baked"/}"
    if [ ! -e "$data/models/$relative" ]; then
        mkdir -p "$data/models/$relative"
        cp -R "$version_dir". "$data/models/$relative"
    fi
done

if ! stash-vision models fetch; then
    echo "error: the model weights could not be fetched and verified (see above). Without internet" >&2
    echo "access, build the image with --build-arg BAKE_MODELS=true, or set STASH_VISION_MODEL_MIRROR" >&2
    echo "to a mirror this container can reach (docs/unraid.md)." >&2
    exit 1
fi

exec stash-vision serve "$@"
