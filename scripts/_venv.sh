# Sourced by scripts/run and scripts/test: make .venv and install the locked
# dependencies (requirements/*.txt, exact versions with hashes), then the
# project itself, editable. Skipped when .venv was last installed from this
# same lock file, so it also works offline.
# $1: "" for the app only, "test" for the suite and its tools.
# Refreshing the lock: see docs/development.md ("Dependencies").
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "booktime needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    echo "booktime: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
_booktime_lock=requirements/app.txt
[ "${1:-}" = "test" ] && _booktime_lock=requirements/test.txt
_booktime_stamp=".venv/.booktime-$(basename "$_booktime_lock" .txt)-lock"
# What a stamp holds: this checkout, and a checksum of the lock and pyproject.toml.
_booktime_sum_of() { echo "$(pwd) $(cat "$1" pyproject.toml | cksum)"; }
_booktime_sum="$(_booktime_sum_of "$_booktime_lock")"
if [ "$(cat "$_booktime_stamp" 2>/dev/null)" != "$_booktime_sum" ]; then
    echo "booktime: installing $_booktime_lock into .venv"
    .venv/bin/python -m pip install --quiet --require-hashes -r "$_booktime_lock"
    .venv/bin/python -m pip install --quiet --no-deps -e .
    echo "$_booktime_sum" > "$_booktime_stamp"
    # The test lock pins every package of the app lock at the same version
    # (both compiled from pyproject.toml): then scripts/run after scripts/test
    # installs nothing, and tests that start scripts/run side by side never
    # run pip into the same .venv at once.
    if [ "$_booktime_lock" = requirements/test.txt ] && [ -z "$(
        grep -E '^[A-Za-z0-9]' requirements/app.txt | sed 's/ .*//' |
            grep -vxF -f <(grep -E '^[A-Za-z0-9]' requirements/test.txt | sed 's/ .*//')
    )" ]; then
        _booktime_sum_of requirements/app.txt > .venv/.booktime-app-lock
    fi
fi
