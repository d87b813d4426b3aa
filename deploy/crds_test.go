package deploy_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The custom resources are decoded into these structs, which follow the
// fields of their CRDs' published OpenAPI schemas (KEDA 2.x keda.sh/v1alpha1
// ScaledObject; Strimzi kafka.strimzi.io/v1beta2 KafkaTopic, Kafka and
// KafkaNodePool) for the parts vidx uses. Strict decoding then rejects any
// field the CRD does not have; validate checks what the schema leaves to
// free-form maps (trigger metadata, topic configs).

const strimziCluster = "strimzi.io/cluster"

type scaledObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            scaledObjectSpec  `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        scaleTarget     `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *advancedConfig `json:"advanced,omitempty"`
	Fallback              *fallback       `json:"fallback,omitempty"`
	Triggers              []scaleTriggers `json:"triggers"`
}

type scaleTarget struct {
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	Name                   string `json:"name"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type advancedConfig struct {
	HorizontalPodAutoscalerConfig *hpaConfig        `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool              `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *scalingModifiers `json:"scalingModifiers,omitempty"`
}

type hpaConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type scalingModifiers struct {
	Formula          string `json:"formula,omitempty"`
	Target           string `json:"target,omitempty"`
	ActivationTarget string `json:"activationTarget,omitempty"`
	MetricType       string `json:"metricType,omitempty"`
}

type fallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type scaleTriggers struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
	MetricType string `json:"metricType,omitempty"`
}

// kafkaScalerMetadata are the settings of KEDA's kafka scaler.
var kafkaScalerMetadata = []string{
	"bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
	"topic", "topicFromEnv", "partitionLimitation", "lagThreshold", "activationLagThreshold",
	"offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
	"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version",
	"sasl", "saslTokenProvider", "tls", "unsafeSsl",
}

func (s *scaledObject) validate() error {
	var errs []error
	if s.Spec.ScaleTargetRef.Name == "" {
		errs = append(errs, errors.New("spec.scaleTargetRef.name is required"))
	}
	if len(s.Spec.Triggers) == 0 {
		errs = append(errs, errors.New("spec.triggers is required"))
	}
	for i, tr := range s.Spec.Triggers {
		if tr.Type != "kafka" {
			continue
		}
		for _, k := range sortedKeys(tr.Metadata) {
			if !slices.Contains(kafkaScalerMetadata, k) {
				errs = append(errs, fmt.Errorf("spec.triggers[%d].metadata.%s is not a kafka scaler setting", i, k))
			}
		}
	}
	return errors.Join(errs...)
}

type kafkaTopic struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            kafkaTopicSpec    `json:"spec"`
}

type kafkaTopicSpec struct {
	TopicName  string         `json:"topicName,omitempty"`
	Partitions int32          `json:"partitions"`
	Replicas   int32          `json:"replicas"`
	Config     map[string]any `json:"config,omitempty"`
}

// topicConfigs are Kafka's topic-level configurations.
var topicConfigs = []string{
	"cleanup.policy", "compression.type", "delete.retention.ms", "file.delete.delay.ms",
	"flush.messages", "flush.ms", "follower.replication.throttled.replicas", "index.interval.bytes",
	"leader.replication.throttled.replicas", "local.retention.bytes", "local.retention.ms",
	"max.compaction.lag.ms", "max.message.bytes", "message.timestamp.type",
	"message.timestamp.before.max.ms", "message.timestamp.after.max.ms",
	"min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas", "preallocate",
	"remote.storage.enable", "retention.bytes", "retention.ms", "segment.bytes",
	"segment.index.bytes", "segment.jitter.ms", "segment.ms", "unclean.leader.election.enable",
}

func (k *kafkaTopic) validate() error {
	var errs []error
	if k.Metadata.Labels[strimziCluster] == "" {
		errs = append(errs, fmt.Errorf("metadata.labels: %s is required for the Topic Operator", strimziCluster))
	}
	if k.Spec.Partitions < 1 || k.Spec.Replicas < 1 {
		errs = append(errs, fmt.Errorf("spec: partitions %d and replicas %d must be positive", k.Spec.Partitions, k.Spec.Replicas))
	}
	for _, key := range sortedKeys(k.Spec.Config) {
		if !slices.Contains(topicConfigs, key) {
			errs = append(errs, fmt.Errorf("spec.config.%s is not a topic configuration", key))
		}
		switch k.Spec.Config[key].(type) {
		case string, float64, bool:
		default:
			errs = append(errs, fmt.Errorf("spec.config.%s: %T is not a string, number or boolean", key, k.Spec.Config[key]))
		}
	}
	return errors.Join(errs...)
}

type kafkaCluster struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Kafka struct {
			Version         string          `json:"version,omitempty"`
			MetadataVersion string          `json:"metadataVersion,omitempty"`
			Listeners       []kafkaListener `json:"listeners"`
			Config          map[string]any  `json:"config,omitempty"`
			Rack            *struct {
				TopologyKey string `json:"topologyKey"`
			} `json:"rack,omitempty"`
		} `json:"kafka"`
		EntityOperator *struct {
			TopicOperator *struct {
				WatchedNamespace         string                       `json:"watchedNamespace,omitempty"`
				ReconciliationIntervalMs int64                        `json:"reconciliationIntervalMs,omitempty"`
				Resources                *corev1.ResourceRequirements `json:"resources,omitempty"`
			} `json:"topicOperator,omitempty"`
			UserOperator *struct {
				WatchedNamespace string                       `json:"watchedNamespace,omitempty"`
				Resources        *corev1.ResourceRequirements `json:"resources,omitempty"`
			} `json:"userOperator,omitempty"`
		} `json:"entityOperator,omitempty"`
	} `json:"spec"`
}

type kafkaListener struct {
	Name           string `json:"name"`
	Port           int32  `json:"port"`
	Type           string `json:"type"`
	TLS            bool   `json:"tls"`
	Authentication *struct {
		Type string `json:"type"`
	} `json:"authentication,omitempty"`
}

type kafkaNodePool struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Replicas int32    `json:"replicas"`
		Roles    []string `json:"roles"`
		Storage  struct {
			Type    string `json:"type"`
			Volumes []struct {
				ID            int32  `json:"id"`
				Type          string `json:"type"`
				Size          string `json:"size,omitempty"`
				Class         string `json:"class,omitempty"`
				DeleteClaim   bool   `json:"deleteClaim,omitempty"`
				KRaftMetadata string `json:"kraftMetadata,omitempty"`
			} `json:"volumes,omitempty"`
		} `json:"storage"`
		Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	} `json:"spec"`
}

func (p *kafkaNodePool) validate() error {
	var errs []error
	if p.Metadata.Labels[strimziCluster] == "" {
		errs = append(errs, fmt.Errorf("metadata.labels: %s is required", strimziCluster))
	}
	for _, r := range p.Spec.Roles {
		if r != "controller" && r != "broker" {
			errs = append(errs, fmt.Errorf("spec.roles: %q is not controller or broker", r))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// splitDocs splits a multi-document YAML file.
func splitDocs(data string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+data, "\n---") {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
