# Sourced by scripts/run and scripts/test: make .venv and install what is
# missing (skipped when everything imports, so it also works offline).
# $1: the pip extra to install ("" for the app only, "test" for the suite).
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "booktime needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    echo "booktime: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
_booktime_modules='django, channels, daphne, channels_redis, rest_framework, drf_spectacular, drf_spectacular_sidecar, whitenoise, dj_database_url, psycopg, redis, standardwebhooks, aiohttp'
_booktime_target='.'
if [ "${1:-}" = "test" ]; then
    _booktime_modules="$_booktime_modules, pytest, pytest_django, pytest_asyncio, pytest_timeout, httpx, websockets, playwright, hypothesis, schemathesis, psutil, ruff"
    _booktime_target='.[test]'
fi
if ! .venv/bin/python -c "import $_booktime_modules" 2>/dev/null; then
    echo "booktime: installing dependencies into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$_booktime_target"
fi
