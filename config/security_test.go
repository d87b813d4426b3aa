package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKafkaSecurityFromFileAndEnv checks TLS and SASL settings load from the
// file, the password from VIDX_KAFKA_SASL_PASSWORD, that Validate checks
// them, and that printing the configuration does not show the password.
func TestKafkaSecurityFromFileAndEnv(t *testing.T) {
	const secret = "from-env-secret"
	path := writeConfig(t, `
kafka:
  brokers: [kafka:9093]
  tls: {enabled: true, server_name: kafka}
  sasl: {mechanism: SCRAM-SHA-512, username: vidx}
`)
	env := map[string]string{"VIDX_KAFKA_SASL_PASSWORD": secret}
	cfg, err := Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.SASL.Password != secret || cfg.Kafka.SASL.Username != "vidx" || !cfg.Kafka.TLS.Enabled {
		t.Fatalf("kafka security not loaded: %+v", cfg.Kafka)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if out := fmt.Sprintf("%+v", cfg); strings.Contains(out, secret) {
		t.Errorf("printed configuration shows the SASL password")
	}

	bad := cfg
	bad.Kafka.SASL.Mechanism = "OAUTHBEARER"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "kafka.sasl.mechanism") {
		t.Errorf("unsupported mechanism: err = %v", err)
	}
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vidx.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
