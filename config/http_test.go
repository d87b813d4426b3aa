package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHTTPConfig(t *testing.T) {
	cases := []struct {
		name  string
		yaml  string
		env   map[string]string
		check func(Config) bool
		err   string
	}{
		{"defaults", "", nil, func(c Config) bool {
			return c.HTTP.Addr == "" && c.HTTP.MaxBodyBytes == 64<<10 && c.HTTP.AuthToken == ""
		}, ""},
		{"token from the environment", "http: {auth_token: from-file}\n", map[string]string{"VIDX_HTTP_AUTH_TOKEN": "from-env"},
			func(c Config) bool { return c.HTTP.AuthToken == "from-env" }, ""},
		{"address and limits", "http: {addr: \":8080\", max_body_bytes: 4096, search_timeout: 5s}\n", nil,
			func(c Config) bool {
				return c.HTTP.Addr == ":8080" && c.HTTP.MaxBodyBytes == 4096 && c.HTTP.SearchTimeout.Seconds() == 5
			}, ""},
		{"body limit too small", "http: {max_body_bytes: 10}\n", nil, nil, "http.max_body_bytes"},
		{"negative timeout", "http: {read_timeout: -1s}\n", nil, nil, "timeouts must not be negative"},
		{"unknown key", "http: {adress: x}\n", nil, nil, "adress"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vidx.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, func(k string) string { return tc.env[k] })
			if err == nil {
				err = cfg.Validate()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Errorf("http %+v", cfg.HTTP)
			}
		})
	}
}
