package kafka_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
)

// TestSASLConfigRedacts checks the password never reaches fmt or slog output.
func TestSASLConfigRedacts(t *testing.T) {
	const secret = "hunter2-very-secret"
	kc := kafka.Config{Brokers: []string{"b:9092"}, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Username: "svc", Password: secret}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "kafka", kc, "sasl", kc.SASL)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "sasl", kc.SASL)
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", kc),
		"%+v":  fmt.Sprintf("%+v", kc),
		"%#v":  fmt.Sprintf("%#v", kc.SASL),
		"%s":   fmt.Sprintf("%s", kc.SASL),
		"slog": logged.String(),
	}
	for verb, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("%s leaks the password: %s", verb, out)
		}
		if !strings.Contains(out, "svc") {
			t.Errorf("%s lost the username: %s", verb, out)
		}
	}
}

func TestKafkaSecurityValidate(t *testing.T) {
	dir := t.TempDir()
	caFile, _, _ := writeCerts(t, dir)
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := kafka.Config{Brokers: []string{"b:9092"}}.WithDefaults()
	cases := []struct {
		name    string
		tls     kafka.TLSConfig
		sasl    kafka.SASLConfig
		wantErr string
	}{
		{name: "plaintext"},
		{name: "tls system roots", tls: kafka.TLSConfig{Enabled: true}},
		{name: "tls ca", tls: kafka.TLSConfig{Enabled: true, CAFile: caFile}},
		{name: "missing ca", tls: kafka.TLSConfig{Enabled: true, CAFile: filepath.Join(dir, "nope.pem")}, wantErr: "kafka.tls.ca_file"},
		{name: "ca not pem", tls: kafka.TLSConfig{Enabled: true, CAFile: notPEM}, wantErr: "no PEM certificate"},
		{name: "cert without key", tls: kafka.TLSConfig{Enabled: true, CertFile: caFile}, wantErr: "go together"},
		{name: "files but disabled", tls: kafka.TLSConfig{CAFile: caFile}, wantErr: "tls.enabled is false"},
		{name: "plain", sasl: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u", Password: "p"}},
		{name: "scram-256 lower case", sasl: kafka.SASLConfig{Mechanism: "scram-sha-256", Username: "u", Password: "p"}},
		{name: "scram-512", sasl: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}},
		{name: "unknown mechanism", sasl: kafka.SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"}, wantErr: "not supported"},
		{name: "no password", sasl: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u"}, wantErr: "needs username and password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kc := base
			kc.TLS, kc.SASL = tc.tls, tc.sasl
			err := kc.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestSecureBroker runs a stage, a producer and a tap against brokers that
// require SASL (PLAIN and both SCRAM variants) over TLS, and checks that
// wrong credentials are refused.
func TestSecureBroker(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCerts(t, dir)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1),
				kfake.SeedTopics(1, "in", "out", "dead-letters"),
				kfake.EnableSASL(), kfake.Superuser(mech, "svc", "s3cret"),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			kc := kafka.Config{
				Brokers: c.ListenAddrs(), Partitions: 1, DialTimeout: 3 * time.Second,
				TLS:  kafka.TLSConfig{Enabled: true, CAFile: caFile, ServerName: "localhost"},
				SASL: kafka.SASLConfig{Mechanism: mech, Username: "svc", Password: "s3cret"},
			}
			if err := kc.WithDefaults().Validate(); err != nil {
				t.Fatal(err)
			}
			if err := kafka.Ping(ctx, kc); err != nil {
				t.Fatalf("ping with good credentials: %v", err)
			}
			h := pipeline.PerMessage(func(_ context.Context, m pipeline.Message) ([]pipeline.Output, error) {
				return []pipeline.Output{{Topic: "out", Key: m.Key, Value: bytes.ToUpper(m.Value)}}, nil
			})
			st, err := kafka.NewStage(kafka.StageConfig{Name: "secure", Topics: []string{"in"}}, kc, h, testLogger(), kafka.Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			runStage(t, ctx, st)
			if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: "in", Key: []byte("k"), Value: []byte("hello")}); err != nil {
				t.Fatalf("produce: %v", err)
			}
			if got := collect(t, ctx, kc, "out", 1); string(got[0].Value) != "HELLO" {
				t.Fatalf("output = %q", got[0].Value)
			}

			wrong := kc
			wrong.SASL.Password = "wrong"
			short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
			defer cancelShort()
			if err := kafka.Ping(short, wrong); err == nil {
				t.Error("ping with a wrong password succeeded")
			}
			noTLS := kc
			noTLS.TLS = kafka.TLSConfig{}
			if err := kafka.Ping(short, noTLS); err == nil {
				t.Error("ping without TLS succeeded against a TLS listener")
			}

			// At start-up, refused settings are an error at once, not a
			// two-minute wait for brokers that are there.
			for name, bad := range map[string]kafka.Config{"wrong password": wrong, "untrusted CA": untrusted(kc)} {
				bad.StartupTimeout = time.Minute
				actx, cancel := context.WithTimeout(ctx, 15*time.Second)
				err := kafka.AwaitTopics(actx, bad, testLogger(), "in")
				if err == nil || actx.Err() != nil || !strings.Contains(err.Error(), "refused the connection settings") {
					t.Errorf("%s: AwaitTopics = %v (context: %v), want an immediate settings error", name, err, actx.Err())
				}
				cancel()
			}
		})
	}
}

// untrusted returns kc trusting the system roots instead of the test CA.
func untrusted(kc kafka.Config) kafka.Config {
	kc.TLS.CAFile = ""
	return kc
}

// writeCerts writes a self-signed CA and a localhost certificate it signs.
func writeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vidx test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}
