// Package testenv says whether the tools a test needs are installed. Where
// one is missing a test skips with the command that installs it, so `go
// test` passes for anyone; under `make test`, which installs them first and
// sets VIDX_TEST_REQUIRE_TOOLS, a missing tool fails the test instead, so a
// broken set-up cannot pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// EnvRequire makes a missing tool a failure rather than a skip.
const EnvRequire = "VIDX_TEST_REQUIRE_TOOLS"

// Required reports whether missing tools fail tests.
func Required() bool { return os.Getenv(EnvRequire) != "" }

// Tools skips (or fails) tb unless every named program is on PATH.
func Tools(tb testing.TB, install string, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing(tb, n+" not found on PATH ("+install+")")
		}
	}
}

// File skips (or fails) tb unless path exists.
func File(tb testing.TB, path, what, install string) {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		missing(tb, what+" not found at "+path+" ("+install+")")
	}
}

func missing(tb testing.TB, msg string) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%s; %s is set, so this is a failure", msg, EnvRequire)
	}
	tb.Skip(msg)
}
