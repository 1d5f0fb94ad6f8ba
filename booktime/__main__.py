"""``booktime`` (console script) and ``python -m booktime``: manage.py for an installed copy."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["booktime", *sys.argv[1:]])


if __name__ == "__main__":
    main()
