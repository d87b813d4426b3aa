package httpapi

import (
	"crypto/rand"
	"encoding/hex"
)

// newID returns a random query id.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "http-" + hex.EncodeToString(b[:])
}
