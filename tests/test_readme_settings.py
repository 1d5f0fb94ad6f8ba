"""The README's configuration table lists every environment variable the settings read."""

from __future__ import annotations

import re

from devtools.processes import BASE_DIR


def settings_variables() -> set[str]:
    source = (BASE_DIR / "booktime" / "settings.py").read_text()
    names = set(re.findall(r'\benv_[a-z]+\(\s*"([A-Z0-9_]+)"', source))
    # env_secret("NAME") also reads NAME_FILE.
    names |= {f"{name}_FILE" for name in re.findall(r'\benv_secret\(\s*"([A-Z0-9_]+)"', source)}
    return names


def readme_table_variables() -> set[str]:
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {
        name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])
    }


def test_every_variable_settings_reads_is_in_the_readme_table() -> None:
    read = settings_variables()
    assert len(read) > 30  # the pattern still finds them
    missing = read - readme_table_variables()
    assert not missing, f"add these to the README's configuration table: {sorted(missing)}"


def test_the_readme_table_lists_nothing_the_settings_do_not_read() -> None:
    extra = readme_table_variables() - settings_variables()
    assert not extra, f"the README's table lists variables settings.py does not read: {extra}"
