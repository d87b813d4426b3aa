#!/usr/bin/env bash
# Installs what vidx needs at run time and checks it: ffmpeg/ffprobe (Debian
# package) and the ONNX Runtime 1.24.1 shared library, taken from the npm
# package onnxruntime-node, which ships a prebuilt libonnxruntime for linux/x64.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.24.1}"
CACHE_DIR="${VIDX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vidx}"
ORT_DIR="$CACHE_DIR/onnxruntime-$ORT_VERSION"
ORT_LIB="$ORT_DIR/libonnxruntime.so.1"

log() { printf 'setup: %s\n' "$*" >&2; }

# --test also installs what the test suite's reference checks use (Debian's
# python3 with torch, onnx and Pillow; ftfy and regex in a venv); the demo
# and the stages need none of it.
WITH_TEST_TOOLS=0
[ "${1:-}" = "--test" ] && WITH_TEST_TOOLS=1

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  log "installing ffmpeg (apt-get)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq ffmpeg >/dev/null
fi
ffmpeg -hide_banner -version | head -n1 >&2

if [ "$WITH_TEST_TOOLS" = 1 ]; then
  # Debian's torch and onnx for /usr/bin/python3 (the interpreter they are
  # built for): scripts/export_bundle.py and its parity test (scripts/export),
  # which skips without them. No recommends: they would pull libtorch-dev, a
  # compiler toolchain, Qt and OpenCV.
  # find_spec looks the modules up without importing torch (1-2 s per run).
  if ! /usr/bin/python3 -c 'import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ("torch", "onnx", "numpy")))' 2>/dev/null; then
    log "installing python3-torch python3-onnx python3-numpy (apt-get)"
    { as_root apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
        python3-torch python3-onnx python3-numpy libopenblas0-pthread >/dev/null; } ||
      log "python3-torch/python3-onnx not installed: the export parity test will skip"
  fi

  # kcat (librdkafka): a second, independent Kafka client for the interop
  # test (app/kcat_test.go), and Java for the real Apache Kafka broker that
  # make test runs (scripts/kafka.sh fetches the broker with Maven).
  if ! command -v kcat >/dev/null; then
    log "installing kcat (apt-get)"
    { as_root apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends kcat >/dev/null; } ||
      log "kcat not installed: the Kafka interop test will skip"
  fi
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    log "installing openjdk-17-jre-headless and maven (apt-get)"
    { as_root apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven >/dev/null; } ||
      log "java/maven not installed: make test cannot start Apache Kafka"
  fi

  # Pillow for Debian's python3: the reference of the preprocessing parity test
  # (encoders/preprocess) and scripts/preprocess_parity.py. Without it that test
  # skips, so a failed install is not fatal.
  if ! /usr/bin/python3 -c "import PIL" 2>/dev/null; then
    log "installing python3-pil (apt-get)"
    { as_root apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-pil >/dev/null; } ||
      log "python3-pil not installed: the preprocessing parity test will skip"
  fi

  # ftfy and regex for the tokenizer's reference test (encoders/tokenizer),
  # which runs clip.tokenize's own text cleaning. Debian packages neither
  # ftfy nor a recent regex for bookworm, so they go into a venv of their
  # own; the test finds it here (or takes VIDX_FTFY_PYTHON) and skips
  # without it.
  FTFY_VENV="$CACHE_DIR/py-ftfy"
  if ! "$FTFY_VENV/bin/python" -c "import ftfy, regex" 2>/dev/null; then
    log "installing ftfy 6.3.1 and regex into $FTFY_VENV (pip)"
    { python3 -m venv "$FTFY_VENV" &&
      "$FTFY_VENV/bin/pip" install -q "ftfy==6.3.1" "regex==2024.11.6"; } ||
      log "ftfy not installed: the tokenizer's ftfy reference test will skip"
  fi

  # The search page's browser test (httpapi/webtest): Debian's chromium,
  # driven by playwright-core from npm (package.json there; never a
  # downloaded browser). The test skips without them.
  if [ ! -x /usr/bin/chromium ]; then
    log "installing chromium (apt-get)"
    { as_root apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; } ||
      log "chromium not installed: the browser test will skip"
  fi
  WEBTEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/httpapi/webtest"
  if command -v npm >/dev/null && [ ! -d "$WEBTEST_DIR/node_modules/playwright-core" ]; then
    log "installing playwright-core (npm ci in httpapi/webtest)"
    (cd "$WEBTEST_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund >/dev/null) ||
      log "playwright-core not installed: the browser test will skip"
  fi

  # onnxruntime's quantizer (PyPI, pinned in scripts/quantize.py) for
  # vidx models quantize and its test, which skips without it.
  python3 "$(dirname "$0")/quantize.py" --setup >/dev/null ||
    log "onnxruntime quantizer not installed: the int8 quantization test will skip"
fi

if [ -n "${VIDX_ORT_LIB:-}" ]; then
  [ -f "$VIDX_ORT_LIB" ] || { log "VIDX_ORT_LIB=$VIDX_ORT_LIB does not exist"; exit 1; }
  log "using ONNX Runtime from VIDX_ORT_LIB=$VIDX_ORT_LIB"
  echo "$VIDX_ORT_LIB"
  exit 0
fi

if [ ! -f "$ORT_LIB" ]; then
  command -v npm >/dev/null || { log "npm is required to fetch onnxruntime-node"; exit 1; }
  log "fetching onnxruntime-node@$ORT_VERSION (npm pack)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
  tar -xzf "$tmp"/onnxruntime-node-*.tgz -C "$tmp" package/bin/napi-v6/linux/x64
  mkdir -p "$ORT_DIR"
  cp "$tmp"/package/bin/napi-v6/linux/x64/libonnxruntime.so.1* "$ORT_DIR/"
  [ -f "$ORT_LIB" ] || { log "libonnxruntime.so.1 not found in the npm package"; exit 1; }
fi
# The library must load and export the C API entry point.
if command -v nm >/dev/null && ! nm -D "$ORT_LIB" | grep -c OrtGetApiBase >/dev/null; then
  log "$ORT_LIB does not export OrtGetApiBase"; exit 1
fi
log "ONNX Runtime $ORT_VERSION at $ORT_LIB"
echo "$ORT_LIB"
