package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vidx/vidx/config"
)

func cmdConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = "config check FILE | config print [--config FILE] [flags]"
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: vidx %s\n", synopsis)
		return errUsage
	}
	switch args[0] {
	case "check":
		fs := newFlagSet("config check", stderr, "config check FILE")
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		if fs.NArg() != 1 {
			fs.Usage()
			return errUsage
		}
		problems := checkConfigFile(fs.Arg(0), os.Getenv)
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "%s: ok\n", fs.Arg(0))
			return nil
		}
		for _, p := range problems {
			fmt.Fprintf(stdout, "%s: %s\n", fs.Arg(0), p)
		}
		return fmt.Errorf("%s: %d problems", fs.Arg(0), len(problems))
	case "print":
		fs := newFlagSet("config print", stderr, "config print [--config FILE] [flags]")
		var cf configFlags
		cf.register(fs, true)
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		cfg, err := cf.load(os.Getenv)
		if err != nil {
			return err
		}
		// Every setting as the stages will run with it, defaults filled.
		return printConfig(stdout, cfg.Effective())
	}
	fmt.Fprintf(stderr, "vidx config: unknown subcommand %q\nusage: vidx %s\n", args[0], synopsis)
	return errUsage
}

// yamlLine finds the line number yaml.v3 puts at the start of its errors.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// checkConfigFile returns every problem of a configuration file, each
// naming the setting's path: unknown fields and wrong types (with their
// line), then everything validation refuses.
func checkConfigFile(path string, env func(string) string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	paths := map[int]string{}
	nodePaths(&root, "", paths)
	cfg, err := config.Load(path, env)
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te):
		for _, e := range te.Errors {
			msg := e
			if m := yamlLine.FindStringSubmatch(e); m != nil {
				n, _ := strconv.Atoi(m[1])
				msg = strings.TrimPrefix(e, m[0])
				if p := paths[n]; p != "" {
					msg = p + ": " + msg + " (line " + m[1] + ")"
				} else {
					msg += " (line " + m[1] + ")"
				}
			}
			problems = append(problems, msg)
		}
	case err != nil:
		return append(problems, err.Error())
	}
	if err := cfg.Validate(); err != nil {
		problems = append(problems, splitJoined(err)...)
	}
	return problems
}

// nodePaths records the dotted path of every mapping key by line.
func nodePaths(n *yaml.Node, prefix string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			nodePaths(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			out[k.Line] = p
			nodePaths(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			nodePaths(c, prefix+"["+strconv.Itoa(i)+"]", out)
		}
	}
}

// splitJoined flattens errors.Join trees into their messages.
func splitJoined(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, splitJoined(e)...)
		}
		return out
	}
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// printConfig writes the effective configuration as YAML, secrets
// redacted, so it can be read, diffed or saved as a starting file.
func printConfig(w io.Writer, cfg config.Config) error {
	const redacted = "[REDACTED]"
	if cfg.Store.Qdrant.APIKey != "" {
		cfg.Store.Qdrant.APIKey = redacted
	}
	if cfg.Kafka.SASL.Password != "" {
		cfg.Kafka.SASL.Password = redacted
	}
	if cfg.HTTP.AuthToken != "" {
		cfg.HTTP.AuthToken = redacted
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&cfg); err != nil {
		return fmt.Errorf("print config: %w", err)
	}
	return enc.Close()
}
