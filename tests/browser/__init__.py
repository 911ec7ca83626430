"""Browser tests: a real Voilà server driven by Debian's chromium through Playwright (a package, so that its conftest does not shadow tests/conftest.py)."""
