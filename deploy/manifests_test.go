// Package deploy_test checks the Kubernetes manifests and the Dockerfile
// without a cluster: the kustomize overlays are built in process, every
// object is decoded strictly into its API type (or, for the KEDA and Strimzi
// custom resources, into structs that follow their CRD schemas), and the
// deployment is checked against the configuration it ships and the code it
// runs.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/stages/sample"
)

const (
	configMount = "/etc/vidx"
	configKey   = "vidx.yaml"
	// fetchMaxBytes is the stages' consumer fetch size (MaxBytes in
	// pipeline/kafka/stage.go): a record larger than this is never read.
	fetchMaxBytes = 4 << 20
	// shutdownMargin is what a stopping pod needs after its drain: produce
	// the batch's outputs, commit, leave the group, flush telemetry (5 s).
	shutdownMargin = 15 * time.Second
)

// modelStages load the model bundle (app.New: encode, pool, index, query).
var modelStages = []string{app.StageEncode, app.StagePool, app.StageIndex, app.StageQuery}

type overlay struct {
	name, dir string
	// autoscaled: the overlay keeps one KEDA ScaledObject per stage.
	autoscaled bool
	namespace  string
	// image every container runs.
	image string
}

var overlays = []overlay{
	{name: "base", dir: "k8s/base", autoscaled: true, image: "ghcr.io/vidx/vidx:latest"},
	{name: "dev", dir: "k8s/overlays/dev", namespace: "vidx-dev", image: "localhost:5000/vidx:dev"},
	{name: "prod", dir: "k8s/overlays/prod", autoscaled: true, namespace: "vidx", image: "ghcr.io/vidx/vidx:0.1.0"},
}

// built is one kustomize build, every object strictly decoded.
type built struct {
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	configMaps   map[string]*corev1.ConfigMap
	scaled       map[string]*scaledObject
	topics       map[string]*kafkaTopic // by spec.topicName
	namespaces   map[string]string      // kind/name -> namespace
	clusterScope map[string]bool        // kind/name of cluster-scoped objects
}

func build(t *testing.T, dir string) *built {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b := &built{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, configMaps: map[string]*corev1.ConfigMap{},
		scaled: map[string]*scaledObject{}, topics: map[string]*kafkaTopic{},
		namespaces: map[string]string{}, clusterScope: map[string]bool{},
	}
	for _, r := range m.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		id := r.GetKind() + "/" + r.GetName()
		obj, err := decodeStrict(r.GetApiVersion(), r.GetKind(), data)
		if err != nil {
			t.Errorf("%s: %s: %v", dir, id, err)
			continue
		}
		b.namespaces[id] = r.GetNamespace()
		switch o := obj.(type) {
		case *appsv1.Deployment:
			b.deployments[o.Name] = o
		case *corev1.Service:
			b.services[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			b.pdbs[o.Name] = o
		case *corev1.ConfigMap:
			b.configMaps[o.Name] = o
		case *scaledObject:
			b.scaled[o.Metadata.Name] = o
		case *kafkaTopic:
			b.topics[o.Spec.TopicName] = o
		case *schedulingv1.PriorityClass:
			b.clusterScope[id] = true
		}
	}
	return b
}

// decodeStrict decodes one object into the Go type of its apiVersion and
// kind; unknown fields, duplicate fields and wrong types are errors, and so
// is a kind the deployment is not expected to contain.
func decodeStrict(apiVersion, kind string, data []byte) (any, error) {
	var obj any
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "scheduling.k8s.io/v1 PriorityClass":
		obj = &schedulingv1.PriorityClass{}
	case "keda.sh/v1alpha1 ScaledObject":
		obj = &scaledObject{}
	case "kafka.strimzi.io/v1beta2 KafkaTopic":
		obj = &kafkaTopic{}
	case "kafka.strimzi.io/v1beta2 Kafka":
		obj = &kafkaCluster{}
	case "kafka.strimzi.io/v1beta2 KafkaNodePool":
		obj = &kafkaNodePool{}
	default:
		return nil, fmt.Errorf("unexpected object %s %s", apiVersion, kind)
	}
	// As the API server reads it: YAML to JSON without looking at the
	// target type (so 5 stays a number where a string is wanted), then JSON
	// into the type with unknown fields refused.
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, err
	}
	if v, ok := obj.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

func TestDecodeStrictRejects(t *testing.T) {
	tests := []struct {
		name, apiVersion, kind, doc, want string
	}{
		{"misspelt probe", "apps/v1", "Deployment",
			"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: c, livenesProbe: {}}]\n",
			"livenesProbe"},
		{"bad quantity", "apps/v1", "Deployment",
			"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: c, resources: {requests: {cpu: lots}}}]\n",
			"quantities"},
		{"unknown ScaledObject field", "keda.sh/v1alpha1", "ScaledObject",
			"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: x}\n  maxReplicas: 3\n  triggers: [{type: kafka, metadata: {topic: t}}]\n",
			"maxReplicas"},
		{"numeric trigger metadata", "keda.sh/v1alpha1", "ScaledObject",
			"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: x}\n  triggers: [{type: kafka, metadata: {lagThreshold: 5}}]\n",
			"string"},
		{"numeric env value", "apps/v1", "Deployment",
			"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: c, env: [{name: N, value: 1}]}]\n",
			"string"},
		{"duplicate key", "v1", "Service", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n", "type"},
		{"unknown kafka scaler setting", "keda.sh/v1alpha1", "ScaledObject",
			"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: x}\n  triggers: [{type: kafka, metadata: {consumerGroups: g}}]\n",
			"consumerGroups"},
		{"unknown topic config", "kafka.strimzi.io/v1beta2", "KafkaTopic",
			"apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaTopic\nmetadata: {name: x, labels: {strimzi.io/cluster: c}}\nspec: {partitions: 1, replicas: 1, config: {retention.msec: 1}}\n",
			"retention.msec"},
		{"KafkaTopic without cluster", "kafka.strimzi.io/v1beta2", "KafkaTopic",
			"apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaTopic\nmetadata: {name: x}\nspec: {partitions: 1, replicas: 1}\n",
			"strimzi.io/cluster"},
		{"unexpected kind", "v1", "Pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict(tt.apiVersion, tt.kind, []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

// stageConfig is what the manifests must agree with for one stage.
type stageConfig struct {
	input     string
	drain     time.Duration
	consumers int // consumers of the group in one pod
}

func stageConfigs(cfg config.Config) map[string]stageConfig {
	out := map[string]stageConfig{}
	for _, spec := range app.Stages {
		rt := spec.Runtime(cfg.Stages).WithDefaults(spec.Name)
		out[spec.Name] = stageConfig{spec.Input(cfg.Topics), rt.DrainTimeout, rt.Replicas}
	}
	return out
}

func TestOverlays(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.name, func(t *testing.T) {
			b := build(t, ov.dir)
			cfg, cmName := loadConfig(t, b)
			checkNamespaces(t, b, ov)
			checkDeployments(t, b, cfg, cmName, ov.image)
			checkTopics(t, b, cfg)
			if ov.autoscaled {
				checkScaledObjects(t, b, cfg)
			} else if len(b.scaled) != 0 {
				t.Errorf("%s: %d ScaledObjects, want none", ov.name, len(b.scaled))
			}
		})
	}
}

// loadConfig returns the config file of the overlay's ConfigMap, loaded and
// validated as `vidx run` does, and the ConfigMap's name.
func loadConfig(t *testing.T, b *built) (config.Config, string) {
	t.Helper()
	if len(b.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want exactly one (the config file)", len(b.configMaps))
	}
	for name, cm := range b.configMaps {
		data, ok := cm.Data[configKey]
		if !ok {
			t.Fatalf("ConfigMap %s has no %s", name, configKey)
		}
		path := filepath.Join(t.TempDir(), configKey)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		// Pods set no VIDX_* variable but the Qdrant API key.
		cfg, err := config.Load(path, func(string) string { return "" })
		if err != nil {
			t.Fatalf("ConfigMap %s: %v", name, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ConfigMap %s: %v", name, err)
		}
		if backend, _ := cfg.Store.Backend(); backend != config.StoreQdrant {
			t.Errorf("store.url %q: pods on several nodes need a shared store (qdrant://)", cfg.Store.URL)
		}
		if cfg.Embedded.Broker {
			t.Error("embedded.broker is on: every stage would run its own broker")
		}
		if cfg.Model.ORTLib != "" {
			t.Errorf("model.ort_lib %q: leave it to the image's VIDX_ORT_LIB", cfg.Model.ORTLib)
		}
		return cfg, name
	}
	panic("unreachable")
}

func checkNamespaces(t *testing.T, b *built, ov overlay) {
	t.Helper()
	for id, ns := range b.namespaces {
		want := ov.namespace
		if b.clusterScope[id] {
			want = ""
		}
		if ns != want {
			t.Errorf("%s: namespace %q, want %q", id, ns, want)
		}
	}
}

func checkDeployments(t *testing.T, b *built, cfg config.Config, cmName, image string) {
	t.Helper()
	_, telemetryPort, err := net.SplitHostPort(cfg.Telemetry.Addr)
	if err != nil {
		t.Fatalf("telemetry.addr %q: %v", cfg.Telemetry.Addr, err)
	}
	stages := stageConfigs(cfg)
	if len(b.deployments) != len(app.AllStages) {
		t.Errorf("%d Deployments, want one per stage %v", len(b.deployments), app.AllStages)
	}
	for _, stage := range app.AllStages {
		name := "vidx-" + stage
		d, ok := b.deployments[name]
		if !ok {
			t.Errorf("no Deployment %s", name)
			continue
		}
		pod := d.Spec.Template
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("%s: selector %v does not select its pod template (%v)", name, d.Spec.Selector, pod.Labels)
		}
		c := container(pod.Spec.Containers, "vidx")
		if c == nil {
			t.Errorf("%s: no container vidx", name)
			continue
		}
		wantArgs := []string{"run", stage, "--config", configMount + "/" + configKey}
		if !slices.Equal(c.Args, wantArgs) || len(c.Command) != 0 {
			t.Errorf("%s: command %v args %v, want the image's entrypoint with %v", name, c.Command, c.Args, wantArgs)
		}
		if c.Image != image {
			t.Errorf("%s: image %q, want %q", name, c.Image, image)
		}

		// Probes on the telemetry port: startup and readiness on /readyz,
		// liveness on /healthz.
		port := containerPort(c, telemetryPort)
		for _, p := range []struct {
			what  string
			probe *corev1.Probe
			path  string
		}{{"startupProbe", c.StartupProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s", name, p.what)
				continue
			}
			g := p.probe.HTTPGet
			if g.Path != p.path || !samePort(g.Port, port) {
				t.Errorf("%s: %s on %s port %s, want %s on the telemetry port %s", name, p.what, g.Path, g.Port.String(), p.path, telemetryPort)
			}
		}
		if sp := c.StartupProbe; sp != nil {
			// The model is loaded before the endpoints listen: allow minutes.
			if budget := time.Duration(sp.PeriodSeconds*sp.FailureThreshold) * time.Second; budget < 2*time.Minute {
				t.Errorf("%s: startup budget %s, too short to load a model", name, budget)
			}
		}

		// Non-root, read-only, no capabilities, default seccomp.
		ps := pod.Spec.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 ||
			ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext %+v, want runAsNonRoot, a non-zero runAsUser and seccomp RuntimeDefault", name, ps)
		}
		for _, cc := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			checkContainerSecurity(t, name, cc)
			if cc.Resources.Requests.Cpu().IsZero() || cc.Resources.Requests.Memory().IsZero() || cc.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: resources %+v, want cpu and memory requests and a memory limit", name, cc.Name, cc.Resources)
			}
		}
		// With a read-only root, /tmp and data_dir must be volumes.
		for _, dir := range []string{"/tmp", cfg.DataDir} {
			if m := mountFor(pod.Spec, c, dir); m == nil || m.ReadOnly {
				t.Errorf("%s: %s is not on a writable volume", name, dir)
			}
		}
		if m := mountFor(pod.Spec, c, configMount+"/"+configKey); m == nil || !volumeFromConfigMap(pod.Spec, m.Name, cmName) {
			t.Errorf("%s: %s is not mounted from ConfigMap %s", name, configMount, cmName)
		}

		// The grace period covers the longest batch's drain plus shutdown;
		// the sample stage's batch is one whole video, bounded by its timeout.
		sc := stages[stage]
		grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
		if grace < sc.drain+shutdownMargin {
			t.Errorf("%s: terminationGracePeriodSeconds %s, want at least the drain timeout %s + %s", name, grace, sc.drain, shutdownMargin)
		}
		if stage == app.StageSample && sc.drain < cfg.Stages.Sample.Timeout {
			t.Errorf("stages.sample.drain_timeout %s is shorter than stages.sample.timeout %s: a rollout would abandon long videos", sc.drain, cfg.Stages.Sample.Timeout)
		}
		if cfg.Telemetry.StuckAfter <= cfg.Stages.Sample.Timeout {
			t.Errorf("telemetry.stuck_after %s <= stages.sample.timeout %s: liveness would kill a long decode", cfg.Telemetry.StuckAfter, cfg.Stages.Sample.Timeout)
		}

		checkModelBundle(t, name, stage, pod.Spec, c, cfg)
		checkSelects(t, name, "Service", b.services[name], pod.Labels, b.deployments)
		if s := b.services[name]; s != nil && !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
			return strconv.Itoa(int(p.Port)) == telemetryPort && samePort(p.TargetPort, port)
		}) {
			t.Errorf("Service %s does not expose the telemetry port %s", name, telemetryPort)
		}
		pdb := b.pdbs[name]
		if pdb == nil {
			t.Errorf("no PodDisruptionBudget %s", name)
		} else {
			if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !sel.Matches(labels.Set(pod.Labels)) {
				t.Errorf("PodDisruptionBudget %s does not select the stage's pods", name)
			}
			// minAvailable would block a node drain with one replica.
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MinAvailable != nil {
				t.Errorf("PodDisruptionBudget %s: want maxUnavailable, not minAvailable", name)
			}
		}
	}
}

func checkContainerSecurity(t *testing.T, pod string, c corev1.Container) {
	t.Helper()
	s := c.SecurityContext
	if s == nil || s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem ||
		s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation ||
		s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(s.Capabilities.Add) != 0 {
		t.Errorf("%s/%s: securityContext %+v, want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", pod, c.Name, s)
	}
}

// checkModelBundle: the stages that load the model pull it into the
// directory the config names; the others do not wait for a download.
func checkModelBundle(t *testing.T, name, stage string, spec corev1.PodSpec, c *corev1.Container, cfg config.Config) {
	t.Helper()
	pull := container(spec.InitContainers, "models-pull")
	if !slices.Contains(modelStages, stage) {
		if pull != nil {
			t.Errorf("%s: the %s stage loads no model but pulls one", name, stage)
		}
		return
	}
	if pull == nil {
		t.Errorf("%s: no models-pull init container", name)
		return
	}
	if pull.Image != c.Image {
		t.Errorf("%s: models-pull image %q differs from the stage's %q", name, pull.Image, c.Image)
	}
	args := pull.Args
	if len(args) < 4 || args[0] != "models" || args[1] != "pull" || args[len(args)-1] != cfg.Model.Bundle {
		t.Errorf("%s: models-pull args %v, want `models pull ... NAME %s` (model.bundle)", name, args, cfg.Model.Bundle)
	}
	pm, sm := mountFor(spec, pull, cfg.Model.Bundle), mountFor(spec, c, cfg.Model.Bundle)
	if pm == nil || pm.ReadOnly || sm == nil || sm.Name != pm.Name {
		t.Errorf("%s: model.bundle %s is not on a volume written by models-pull and mounted by the stage", name, cfg.Model.Bundle)
	}
}

func checkSelects(t *testing.T, name, kind string, s *corev1.Service, podLabels map[string]string, all map[string]*appsv1.Deployment) {
	t.Helper()
	if s == nil {
		t.Errorf("no %s %s", kind, name)
		return
	}
	sel := labels.SelectorFromSet(s.Spec.Selector)
	if sel.Empty() || !sel.Matches(labels.Set(podLabels)) {
		t.Errorf("%s %s does not select its stage's pods", kind, name)
	}
	for other, d := range all {
		if other != name && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s %s also selects %s's pods", kind, name, other)
		}
	}
}

func checkTopics(t *testing.T, b *built, cfg config.Config) {
	t.Helper()
	// The shipped configs keep the default topic names, so clients
	// (vidx ingest, vidx search) work without a config file.
	if cfg.Topics != config.Default().Topics {
		t.Errorf("topics %+v differ from the defaults %+v", cfg.Topics, config.Default().Topics)
	}
	want := append(cfg.Topics.All(), cfg.Topics.Compacted()...)
	for _, name := range want {
		if b.topics[name] == nil {
			t.Errorf("no KafkaTopic for topic %q", name)
		}
	}
	if len(b.topics) != len(want) {
		t.Errorf("%d KafkaTopics, want %d (%v)", len(b.topics), len(want), want)
	}
	cluster := ""
	for name, kt := range b.topics {
		if cluster == "" {
			cluster = kt.Metadata.Labels[strimziCluster]
		}
		if kt.Metadata.Labels[strimziCluster] != cluster {
			t.Errorf("KafkaTopic %s belongs to cluster %q, others to %q", name, kt.Metadata.Labels[strimziCluster], cluster)
		}
		compact := kt.Spec.Config["cleanup.policy"] == "compact"
		if want := slices.Contains(cfg.Topics.Compacted(), name); compact != want {
			t.Errorf("KafkaTopic %s: compacted %v, want %v", name, compact, want)
		}
		if isr, err := strconv.Atoi(fmt.Sprint(kt.Spec.Config["min.insync.replicas"])); err == nil && int32(isr) > kt.Spec.Replicas {
			t.Errorf("KafkaTopic %s: min.insync.replicas %d > replicas %d: no write would succeed", name, isr, kt.Spec.Replicas)
		}
	}
	// Topics that carry clips (dead letters keep the original message) must
	// take the largest clip the sample stage produces, with headroom for
	// the record batch and headers, and stay readable by the stages.
	for _, name := range []string{cfg.Topics.Clips, cfg.Topics.DeadLetters} {
		kt := b.topics[name]
		if kt == nil {
			continue
		}
		n, err := strconv.Atoi(fmt.Sprint(kt.Spec.Config["max.message.bytes"]))
		if err != nil || n < sample.MaxMessageBytes+64<<10 || n > fetchMaxBytes {
			t.Errorf("KafkaTopic %s: max.message.bytes %v, want %d + headroom, at most %d", name, kt.Spec.Config["max.message.bytes"], sample.MaxMessageBytes, fetchMaxBytes)
		}
	}
	// The brokers are the Strimzi cluster's bootstrap service.
	wantBroker := cluster + "-kafka-bootstrap:9092"
	if !slices.Equal(cfg.Kafka.Brokers, []string{wantBroker}) {
		t.Errorf("kafka.brokers %v, want Strimzi's bootstrap service [%s]", cfg.Kafka.Brokers, wantBroker)
	}
}

func checkScaledObjects(t *testing.T, b *built, cfg config.Config) {
	t.Helper()
	stages := stageConfigs(cfg)
	if len(b.scaled) != len(app.AllStages) {
		t.Errorf("%d ScaledObjects, want one per stage", len(b.scaled))
	}
	for _, stage := range app.AllStages {
		name := "vidx-" + stage
		so := b.scaled[name]
		if so == nil {
			t.Errorf("no ScaledObject %s", name)
			continue
		}
		ref := so.Spec.ScaleTargetRef
		if ref.Name != name || (ref.Kind != "" && ref.Kind != "Deployment") || b.deployments[ref.Name] == nil {
			t.Errorf("ScaledObject %s scales %s %s, want Deployment %s", name, ref.Kind, ref.Name, name)
		}
		if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
			t.Errorf("ScaledObject %s: triggers %+v, want one kafka trigger", name, so.Spec.Triggers)
			continue
		}
		md := so.Spec.Triggers[0].Metadata
		group := kafka.StageConfig{Name: stage}.WithDefaults().Group
		input := stages[stage].input
		if md["consumerGroup"] != group || md["topic"] != input {
			t.Errorf("ScaledObject %s: group %q topic %q, want the stage's group %q on its input topic %q",
				name, md["consumerGroup"], md["topic"], group, input)
		}
		if md["bootstrapServers"] != strings.Join(cfg.Kafka.Brokers, ",") {
			t.Errorf("ScaledObject %s: bootstrapServers %q, want kafka.brokers %v", name, md["bootstrapServers"], cfg.Kafka.Brokers)
		}
		if lag, err := strconv.Atoi(md["lagThreshold"]); err != nil || lag < 1 {
			t.Errorf("ScaledObject %s: lagThreshold %q is not a positive integer", name, md["lagThreshold"])
		}
		// The stages start a new group at the first offset; KEDA must
		// count lag the same way.
		if md["offsetResetPolicy"] != "earliest" {
			t.Errorf("ScaledObject %s: offsetResetPolicy %q, want earliest", name, md["offsetResetPolicy"])
		}
		minR := ptrOr(so.Spec.MinReplicaCount, 0)
		maxR := ptrOr(so.Spec.MaxReplicaCount, 100)
		if minR > maxR {
			t.Errorf("ScaledObject %s: min %d > max %d", name, minR, maxR)
		}
		// More consumers than partitions sit idle; KEDA counts pods, and
		// each pod runs the stage's replicas.
		if kt := b.topics[input]; kt != nil && maxR*int32(stages[stage].consumers) > kt.Spec.Partitions {
			t.Errorf("ScaledObject %s: maxReplicaCount %d x %d consumers a pod > %d partitions of %s",
				name, maxR, stages[stage].consumers, kt.Spec.Partitions, input)
		}
		// The sample stage also runs the registered live streams.
		if stage == app.StageSample && minR < 1 {
			t.Errorf("ScaledObject %s: minReplicaCount %d would stop live streams when videos is idle", name, minR)
		}
	}
}

func container(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// containerPort finds the container port serving the telemetry endpoints.
func containerPort(c *corev1.Container, port string) *corev1.ContainerPort {
	for i, p := range c.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == port {
			return &c.Ports[i]
		}
	}
	return nil
}

// samePort reports whether ref (a number or a port name) is p.
func samePort(ref intstr.IntOrString, p *corev1.ContainerPort) bool {
	if p == nil {
		return false
	}
	if ref.Type == intstr.String {
		return p.Name != "" && ref.StrVal == p.Name
	}
	return ref.IntVal == p.ContainerPort
}

// mountFor returns the mount under which path lies (the deepest one).
func mountFor(spec corev1.PodSpec, c *corev1.Container, path string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best != nil && !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == best.Name }) {
		return nil
	}
	return best
}

func volumeFromConfigMap(spec corev1.PodSpec, volume, cm string) bool {
	for _, v := range spec.Volumes {
		if v.Name == volume && v.ConfigMap != nil && v.ConfigMap.Name == cm {
			return true
		}
	}
	return false
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}
