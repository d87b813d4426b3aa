//go:build !unix

package embedded

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir only creates the lock file: there is no portable advisory lock in
// the standard library, so on these platforms callers must not open one
// directory from two processes.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}

// syncDir is a no-op: directories cannot be fsynced on these platforms and
// their file systems order metadata updates themselves.
func syncDir(string) error { return nil }
