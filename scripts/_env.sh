# Sourced by scripts/serve and scripts/test: a project virtualenv in .venv with the needed extras,
# reinstalled only when pyproject.toml changes.

die() { echo "error: $*" >&2; exit 1; }

pick_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.12 python3.11 python3.13 python3; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    local extras="$1" python stamp
    if [ ! -x .venv/bin/python ]; then
        python=$(pick_python) || die "stash-vision needs Python 3.11-3.13 with venv (Debian/Ubuntu: apt-get install python3 python3-venv); set PYTHON=/path/to/python3.x to choose one"
        echo "creating .venv with $($python --version)" >&2
        "$python" -m venv .venv || die "could not create .venv (Debian/Ubuntu: apt-get install python3-venv)"
    fi
    stamp=".venv/.installed-${extras//,/-}-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "installing stash-vision[$extras] into .venv" >&2
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".[$extras]" || die "pip install failed (see above)"
        rm -f .venv/.installed-*
        touch "$stamp"
    fi
}

# The extra that runs the models here: `embedded-gpu` (ONNX Runtime's GPU build) when nvidia-smi
# lists a GPU and STASH_VISION_DEVICE is not `cpu`, else `embedded`.
embedded_extra() {
    if [ "${STASH_VISION_DEVICE:-auto}" != cpu ] && command -v nvidia-smi >/dev/null 2>&1 \
        && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        echo embedded-gpu
    else
        echo embedded
    fi
}

# onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: with both installed,
# whichever came last owns the files, and uninstalling one breaks the other. Before installing
# `$1` (embedded or embedded-gpu), both go when the unwanted one is there, and the stamp with
# them, so ensure_venv installs the wanted build afresh.
switch_onnxruntime_build() {
    local unwanted=onnxruntime-gpu
    [ "$1" = embedded-gpu ] && unwanted=onnxruntime
    if [ -x .venv/bin/python ] && .venv/bin/python -m pip show --quiet "$unwanted" >/dev/null 2>&1; then
        echo "replacing $unwanted in .venv (extra $1)" >&2
        .venv/bin/python -m pip uninstall --quiet -y onnxruntime onnxruntime-gpu
        rm -f .venv/.installed-*
    fi
}
