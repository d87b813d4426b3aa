//go:build !unix

package sourceguard

import "os"

func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

func openedPath(*os.File) (string, bool) { return "", false }

func inheritedPath() (string, bool) { return "", false }
