package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

func parseDockerfile(t *testing.T, file string) []instruction {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out   []instruction
		cur   strings.Builder
		stage = -1
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd: cmd, args: strings.TrimSpace(args), stage: stage})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// shellDefault returns the default of VAR="${VAR:-DEFAULT}" in a script.
func shellDefault(t *testing.T, script, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `="\$\{` + name + `:-([^}]*)\}"`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("scripts/setup.sh: no %s=\"${%s:-...}\"", name, name)
	}
	return m[1]
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile")
	setup, err := os.ReadFile("../scripts/setup.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(setup)
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}

	// Global ARGs (before the first FROM) and each stage's ARG defaults.
	args := map[string]string{}
	stageArgs := map[int]map[string]string{}
	stages := map[string]int{} // name -> index
	var froms []string
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			if in.stage < 0 {
				args[k] = v
			} else {
				if stageArgs[in.stage] == nil {
					stageArgs[in.stage] = map[string]string{}
				}
				stageArgs[in.stage][k] = v
			}
		case "FROM":
			f := strings.Fields(in.args)
			froms = append(froms, os.Expand(f[0], func(k string) string { return args[k] }))
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = in.stage
			}
		}
	}
	final := len(froms) - 1
	expand := func(stage int, s string) string {
		return os.Expand(s, func(k string) string {
			if v, ok := stageArgs[stage][k]; ok {
				return v
			}
			return args[k]
		})
	}
	// The base image of a stage, following FROM <stage> chains.
	var baseImage func(i int) string
	baseImage = func(i int) string {
		if j, ok := stages[froms[i]]; ok {
			return baseImage(j)
		}
		return froms[i]
	}

	t.Run("build", func(t *testing.T) {
		// A cgo build (onnxruntime_go dlopens the library) with the Go of
		// go.mod, on the runtime's Debian release so glibc matches.
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?$`).FindStringSubmatch(string(gomod))
		if m == nil {
			t.Fatal("go.mod: no go directive")
		}
		build, ok := stages["build"]
		if !ok {
			t.Fatal("no build stage")
		}
		want := "golang:" + m[1]
		if !strings.HasPrefix(froms[build], want) || !strings.HasSuffix(froms[build], "-bookworm") {
			t.Errorf("build stage FROM %s, want %s*-bookworm (go.mod: go %s%s)", froms[build], want, m[1], m[2])
		}
		if v := args["GO_VERSION"]; m[2] != "" && compareVersions(v, m[1]+m[2]) < 0 {
			t.Errorf("GO_VERSION %s is older than go.mod's go %s%s", v, m[1], m[2])
		}
		if !slices.ContainsFunc(ins, func(in instruction) bool {
			return in.stage == build && in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=1") &&
				strings.Contains(in.args, "go build") && strings.Contains(in.args, "./cmd/vidx")
		}) {
			t.Error("build stage: no `CGO_ENABLED=1 go build ... ./cmd/vidx`")
		}
		if got := baseImage(final); got != "debian:bookworm-slim" {
			t.Errorf("runtime image is %s, want debian:bookworm-slim", got)
		}
	})

	t.Run("setup.sh", func(t *testing.T) {
		// The image installs ffmpeg and ONNX Runtime by running
		// scripts/setup.sh itself, in the ort stage without VIDX_ORT_LIB (so
		// it fetches the library) and with VIDX_CACHE_DIR naming where.
		var copied string
		for _, in := range ins {
			if in.cmd == "COPY" && strings.HasPrefix(in.args, "scripts/setup.sh ") {
				copied = strings.Fields(in.args)[1]
			}
		}
		if copied == "" {
			t.Fatal("scripts/setup.sh is not copied into the image")
		}
		ort, ok := stages["ort"]
		if !ok {
			t.Fatal("no ort stage")
		}
		ortVersion := shellDefault(t, script, "ORT_VERSION")
		if got := expand(ort, "${ORT_VERSION}"); got != ortVersion {
			t.Errorf("ort stage ORT_VERSION %q, setup.sh installs %q", got, ortVersion)
		}
		if got := expand(final, "${ORT_VERSION}"); got != ortVersion {
			t.Errorf("final stage ORT_VERSION %q, setup.sh installs %q", got, ortVersion)
		}
		cacheRe := regexp.MustCompile(`VIDX_CACHE_DIR=(\S+) bash ` + regexp.QuoteMeta(copied) + `\b`)
		var cacheDir string
		for _, in := range ins {
			if in.stage == ort && in.cmd == "RUN" {
				if m := cacheRe.FindStringSubmatch(in.args); m != nil {
					cacheDir = m[1]
					if strings.Contains(in.args, "VIDX_ORT_LIB") {
						t.Error("ort stage sets VIDX_ORT_LIB: setup.sh would skip the download")
					}
				}
			}
		}
		if cacheDir == "" {
			t.Fatalf("ort stage does not run `VIDX_CACHE_DIR=DIR bash %s`", copied)
		}
		// setup.sh's layout: $CACHE_DIR/onnxruntime-$ORT_VERSION/libonnxruntime.so.1.
		for _, want := range []string{
			`ORT_DIR="$CACHE_DIR/onnxruntime-$ORT_VERSION"`, `ORT_LIB="$ORT_DIR/libonnxruntime.so.1"`,
			`npm pack --silent "onnxruntime-node@$ORT_VERSION"`, `package/bin/napi-v6/linux/x64`,
		} {
			if !strings.Contains(script, want) {
				t.Errorf("scripts/setup.sh no longer has %s: update deploy/Dockerfile and this test", want)
			}
		}
		ortDir := path.Join(cacheDir, "onnxruntime-"+ortVersion)
		wantLib := path.Join(ortDir, "libonnxruntime.so.1")
		var lib string
		copiedLib := false
		for _, in := range ins {
			if in.stage != final {
				continue
			}
			if in.cmd == "ENV" {
				if m := regexp.MustCompile(`VIDX_ORT_LIB=(\S+)`).FindStringSubmatch(in.args); m != nil {
					lib = expand(final, m[1])
				}
			}
			if in.cmd == "COPY" && strings.HasPrefix(in.args, "--from=ort ") &&
				strings.TrimSuffix(expand(final, strings.Fields(in.args)[1]), "/") == ortDir {
				copiedLib = true
			}
		}
		if lib != wantLib {
			t.Errorf("final stage VIDX_ORT_LIB %q, want %q (where setup.sh put it)", lib, wantLib)
		}
		if !copiedLib {
			t.Errorf("final stage does not copy %s from the ort stage", ortDir)
		}
		// ffmpeg comes from setup.sh too, run on the runtime base.
		runsSetup := func(stage int) bool {
			return slices.ContainsFunc(ins, func(in instruction) bool {
				return in.stage == stage && in.cmd == "RUN" && strings.Contains(in.args, "bash "+copied)
			})
		}
		base, ok := stages["base"]
		if !ok || !runsSetup(base) || baseImage(final) != froms[base] || froms[final] != "base" {
			t.Error("the runtime image must be the base stage, where setup.sh installs ffmpeg")
		}
		if !runsSetup(final) {
			t.Error("the final stage does not check its install with setup.sh")
		}
	})

	t.Run("runtime", func(t *testing.T) {
		var user, entrypoint, volumes, dataDir string
		for _, in := range ins {
			if in.stage != final {
				continue
			}
			switch in.cmd {
			case "USER":
				user = in.args
			case "ENTRYPOINT":
				entrypoint = in.args
			case "VOLUME":
				volumes = in.args
			case "ENV":
				if m := regexp.MustCompile(`VIDX_DATA_DIR=(\S+)`).FindStringSubmatch(in.args); m != nil {
					dataDir = m[1]
				}
			}
		}
		if entrypoint != `["vidx"]` {
			t.Errorf("ENTRYPOINT %s, want [\"vidx\"]", entrypoint)
		}
		uid, _, _ := strings.Cut(user, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("USER %q, want a numeric non-root user (runAsNonRoot checks the number)", user)
		}
		// The pods run as the image's user and mount its writable paths.
		b := build(t, "k8s/base")
		cfg, _ := loadConfig(t, b)
		if dataDir != cfg.DataDir {
			t.Errorf("image VIDX_DATA_DIR %q, the config's data_dir is %q", dataDir, cfg.DataDir)
		}
		for _, v := range []string{"/tmp", dataDir} {
			if !strings.Contains(volumes, `"`+v+`"`) {
				t.Errorf("VOLUME %s does not declare %s", volumes, v)
			}
		}
		for name, d := range b.deployments {
			if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || strconv.Itoa(int(*sc.RunAsUser)) != uid {
				t.Errorf("%s: runAsUser differs from the image's USER %s", name, uid)
			}
		}
	})
}

// TestDockerignore: the build context keeps every directory of a package
// cmd/vidx is built from, and the setup script.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "!"); ok {
			kept[strings.TrimSuffix(s, "/")] = true
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/vidx")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		if !kept[top] {
			t.Errorf("%s (a dependency of cmd/vidx) is left out of the build context by Dockerfile.dockerignore", rel)
		}
	}
	for _, f := range []string{"go.mod", "go.sum", "scripts/setup.sh"} {
		if !kept[f] {
			t.Errorf("Dockerfile.dockerignore leaves out %s", f)
		}
	}
}

func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// TestStrimziAndQdrant: the Kafka clusters and the Qdrant values agree with
// what the stages and the KafkaTopics expect.
func TestStrimziAndQdrant(t *testing.T) {
	for _, tt := range []struct{ file, overlay string }{
		{"strimzi/kafka.yaml", "k8s/overlays/prod"},
		{"strimzi/kafka-dev.yaml", "k8s/overlays/dev"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			var cluster *kafkaCluster
			var brokers int32
			for _, doc := range splitDocs(string(data)) {
				var tm struct{ APIVersion, Kind string }
				if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
					t.Fatal(err)
				}
				obj, err := decodeStrict(tm.APIVersion, tm.Kind, []byte(doc))
				if err != nil {
					t.Fatalf("%s %s: %v", tm.APIVersion, tm.Kind, err)
				}
				switch o := obj.(type) {
				case *kafkaCluster:
					cluster = o
				case *kafkaNodePool:
					if slices.Contains(o.Spec.Roles, "broker") {
						brokers += o.Spec.Replicas
					}
				}
			}
			if cluster == nil {
				t.Fatal("no Kafka resource")
			}
			b := build(t, tt.overlay)
			cfg, _ := loadConfig(t, b)
			// The stages speak plain Kafka to the bootstrap service.
			want := cluster.Metadata.Name + "-kafka-bootstrap:"
			if len(cfg.Kafka.Brokers) != 1 || !strings.HasPrefix(cfg.Kafka.Brokers[0], want) {
				t.Fatalf("kafka.brokers %v, want %sPORT", cfg.Kafka.Brokers, want)
			}
			port, _ := strconv.Atoi(strings.TrimPrefix(cfg.Kafka.Brokers[0], want))
			if !slices.ContainsFunc(cluster.Spec.Kafka.Listeners, func(l kafkaListener) bool {
				return l.Port == int32(port) && !l.TLS && l.Type == "internal" && l.Authentication == nil
			}) {
				t.Errorf("Kafka %s has no plain internal listener on %d", cluster.Metadata.Name, port)
			}
			if cluster.Spec.EntityOperator == nil || cluster.Spec.EntityOperator.TopicOperator == nil {
				t.Error("no Topic Operator: the KafkaTopics would never be created")
			}
			for name, kt := range b.topics {
				if kt.Metadata.Labels[strimziCluster] != cluster.Metadata.Name {
					t.Errorf("KafkaTopic %s is for cluster %q, not %q", name, kt.Metadata.Labels[strimziCluster], cluster.Metadata.Name)
				}
				if kt.Spec.Replicas > brokers {
					t.Errorf("KafkaTopic %s: %d replicas on %d brokers", name, kt.Spec.Replicas, brokers)
				}
			}
			if int32(cfg.Kafka.ReplicationFactor) > brokers {
				t.Errorf("kafka.replication_factor %d on %d brokers", cfg.Kafka.ReplicationFactor, brokers)
			}
		})
	}

	for _, tt := range []struct{ values, overlay string }{
		{"qdrant/values.yaml", "k8s/overlays/prod"},
		{"qdrant/values-dev.yaml", "k8s/overlays/dev"},
	} {
		t.Run(tt.values, func(t *testing.T) {
			data, err := os.ReadFile(tt.values)
			if err != nil {
				t.Fatal(err)
			}
			var v struct {
				ReplicaCount int `json:"replicaCount"`
				APIKey       any `json:"apiKey"`
				Config       struct {
					Cluster struct {
						Enabled bool `json:"enabled"`
					} `json:"cluster"`
				} `json:"config"`
			}
			if err := yaml.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			b := build(t, tt.overlay)
			cfg, _ := loadConfig(t, b)
			// Release "qdrant": the chart's Service is qdrant, gRPC on 6334.
			if cfg.Store.URL != "qdrant://qdrant:6334" {
				t.Errorf("store.url %q, want the Helm release's gRPC service qdrant://qdrant:6334", cfg.Store.URL)
			}
			if v.ReplicaCount > 1 && !v.Config.Cluster.Enabled {
				t.Errorf("%d Qdrant replicas without config.cluster.enabled", v.ReplicaCount)
			}
			if want := int(cfg.Store.Qdrant.ReplicationFactor); want > max(v.ReplicaCount, 1) {
				t.Errorf("store.qdrant.replication_factor %d on %d Qdrant nodes", want, v.ReplicaCount)
			}
			// apiKey: true makes the Secret qdrant-apikey the pods read.
			if v.APIKey == true {
				for name, d := range b.deployments {
					c := container(d.Spec.Template.Spec.Containers, "vidx")
					if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
						return e.Name == "VIDX_QDRANT_API_KEY" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
							e.ValueFrom.SecretKeyRef.Name == "qdrant-apikey" && e.ValueFrom.SecretKeyRef.Key == "api-key"
					}) {
						t.Errorf("%s: VIDX_QDRANT_API_KEY is not read from the chart's Secret qdrant-apikey", name)
					}
				}
			}
		})
	}
}
