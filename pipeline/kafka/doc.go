// Package kafka is vidx's one Kafka runtime: it moves messages between
// Kafka topics and pipeline handlers. A Stage owns the consumer group,
// batching, producing, offset commits and the middleware chain around its
// handler; the rest of the package is the small set of topic tools the
// stages and commands share (topic creation and start-up waits, readers of
// partitions and compacted topics, request/reply, lag).
//
// Delivery is at-least-once: offsets of a batch are committed only after
// every output of that batch (dead letters included) has been acknowledged
// by all in-sync replicas. Downstream writes are keyed so a redelivered
// message overwrites rather than duplicates.
//
// It is the only package outside the crash harness that imports kafka-go.
package kafka
