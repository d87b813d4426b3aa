package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vidx/vidx/config"
)

// configFlags are the flags every command that loads a configuration takes.
// Flags win over the file and the environment.
type configFlags struct {
	path        string
	brokers     string
	bundle      string
	dataDir     string
	store       string
	logLevel    string
	logFormat   string
	ortLib      string
	embedded    bool
	brokerPort  int
	metricsAddr string
	// httpAddr is --http-addr ("-": not given); httpDefault applies when
	// neither it nor http.addr is set.
	httpAddr, httpDefault string
	// fileRoots are folders named on the command line that local video
	// files may be read from.
	fileRoots []string
}

func (c *configFlags) register(fs *flag.FlagSet, withEmbedded bool) {
	fs.StringVar(&c.path, "config", "", "YAML configuration file")
	fs.StringVar(&c.brokers, "brokers", "", "Kafka brokers, comma separated (env VIDX_BROKERS)")
	fs.StringVar(&c.bundle, "bundle", "", "model bundle directory (env VIDX_BUNDLE)")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory (env VIDX_DATA_DIR)")
	fs.StringVar(&c.store, "store", "", "vector store URL: embedded, embedded:///dir or qdrant://HOST:6334 (env VIDX_STORE)")
	fs.StringVar(&c.logLevel, "log-level", "", "debug, info, warn or error (env VIDX_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", "", "text or json")
	fs.StringVar(&c.ortLib, "ort-lib", "", "ONNX Runtime shared library (env VIDX_ORT_LIB)")
	fs.IntVar(&c.brokerPort, "broker-port", -1, "embedded broker port on 127.0.0.1 (0: any free port)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "-", "address of /metrics, /healthz and /readyz (empty disables)")
	if withEmbedded {
		fs.BoolVar(&c.embedded, "embedded", false, "run an in-process Kafka broker and the embedded store")
	}
}

func (c *configFlags) load(env func(string) string) (config.Config, error) {
	cfg, err := config.Load(c.path, env)
	if err != nil {
		return cfg, err
	}
	if c.brokers != "" {
		cfg.Kafka.Brokers = strings.Split(c.brokers, ",")
	}
	if c.bundle != "" {
		cfg.Model.Bundle = c.bundle
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	if c.store != "" {
		cfg.Store.URL = c.store
	}
	if c.logLevel != "" {
		cfg.LogLevel = c.logLevel
	}
	if c.logFormat != "" {
		cfg.LogFormat = c.logFormat
	}
	if c.ortLib != "" {
		cfg.Model.ORTLib = c.ortLib
	}
	if c.metricsAddr != "-" {
		cfg.Telemetry.Addr = c.metricsAddr
	}
	if c.brokerPort >= 0 {
		cfg.Embedded.BrokerPort = c.brokerPort
	}
	if c.httpAddr != "" && c.httpAddr != "-" {
		cfg.HTTP.Addr = c.httpAddr
	} else if c.httpAddr == "" {
		cfg.HTTP.Addr = ""
	} else if cfg.HTTP.Addr == "" {
		cfg.HTTP.Addr = c.httpDefault
	}
	if c.embedded {
		cfg.Embedded.Broker = true
		if cfg.Store.URL == "" {
			cfg.Store.URL = "embedded"
		}
	}
	return cfg, cfg.Validate()
}

func newFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vidx %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}
