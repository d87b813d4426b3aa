# vidx: two commands do everything on a fresh machine.
#   make demo   set up, build, and run the whole pipeline on embedded defaults
#   make test   set up and run every test
GO        ?= go
BIN       ?= bin/vidx
GOFLAGS   ?=
TEST_ARGS ?= -count=1 -timeout 20m
# Go's simd/archsimd (an experiment in Go 1.26) gives the exact re-rank and
# the scan their AVX2 kernels; a build without it uses the portable ones,
# which give the same results more slowly.
GOEXPERIMENT ?= simd
export GOEXPERIMENT

# Tests run on the embedded broker and on a real Apache Kafka (both), which
# make test starts on loopback for the run and stops after it. KAFKA_TEST=
# embedded skips the real broker.
KAFKA_TEST ?= both
# make chaos KAFKA=real runs the crash harness on real Apache Kafka.
KAFKA     ?= embedded
KAFKA_NODES ?= 1

.PHONY: all setup setup-test build demo test vet fmt bench bench-go chaos clean kafka kafka-stop

all: build

# Installs ffmpeg (apt-get) and ONNX Runtime 1.24.1 (from the npm package
# onnxruntime-node) into ~/.cache/vidx, and checks both.
setup:
	@bash scripts/setup.sh >/dev/null

# setup plus Debian's python3 with torch, onnx and Pillow, the references of
# the export and preprocessing parity tests, and Debian's chromium with
# playwright-core (npm) for the search page's browser test.
setup-test:
	@bash scripts/setup.sh --test >/dev/null

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/vidx

demo: setup build
	./$(BIN) demo

test: setup-test
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	@VIDX_TEST_REQUIRE_TOOLS=1 bash scripts/with-kafka.sh $(KAFKA_TEST) $(GO) test $(TEST_ARGS) ./...

# A single-node Apache Kafka on loopback; prints its bootstrap address.
# scripts/kafka.sh --help lists the rest (--nodes 3, restart, status).
kafka:
	@bash scripts/kafka.sh start $(KAFKA_ARGS)

kafka-stop:
	@bash scripts/kafka.sh stop

# vidx bench at ViT-B/32 scale (BENCHMARKS.md); BENCH_ARGS="--quick" for a
# smoke run. It needs python3-torch (setup-test) to export its random models.
bench: setup-test build
	./$(BIN) bench $(BENCH_ARGS)

# Go micro-benchmarks on the tiny test models.
bench-go: setup
	$(GO) test -run '^$$' -bench . -benchtime 20x ./encoders/onnx/ ./media/ ./stages/encode/ ./stages/pool/ ./sinks/storetest/

chaos: setup
	$(GO) vet -tags chaos ./chaos/
	$(GO) test -tags chaos -v -timeout 60m ./chaos/ -chaos.kafka $(KAFKA) -chaos.nodes $(KAFKA_NODES) $(CHAOS_ARGS)   # CHAOS_ARGS="-chaos.jobs 200 -chaos.kills 20" for the full run

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .vidx
