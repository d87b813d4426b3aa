// Package webtest holds the search page's browser test: the pipeline on an
// embedded broker indexes generated videos through the HTTP API, and
// Debian's chromium, driven by playwright-core (package.json here; installed
// by scripts/setup.sh --test), searches and plays them.
package webtest
