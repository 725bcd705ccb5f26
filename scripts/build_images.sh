#!/usr/bin/env bash
# Build the images with podman where no image registry can be reached: the base is made from
# Debian's packages (mmdebstrap), pip's settings and CA go in as build secrets (no layer keeps
# them), and wheels this machine already has (the CPU torch, a compiled llama.cpp) are lent to
# the build read-only instead of being downloaded or compiled again.
#   scripts/build_images.sh [base] [light] [models] [redis]     (default: light models)
# `redis`: Debian's Redis as an image, for Compose where the official image cannot be pulled.
# Environment: RAG_IMAGE_TAG (dev), RAG_IMAGE_VERSION (the version label), RAG_BASE_IMAGE,
# PODMAN (the podman command line), PIP (a pip whose cache may hold a llama.cpp wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a PODMAN <<<"${PODMAN:-podman}"
BASE=${RAG_BASE_IMAGE:-localhost/rag-base:bookworm}
TAG=${RAG_IMAGE_TAG:-dev}
VERSION=${RAG_IMAGE_VERSION:-$(git describe --always --dirty 2>/dev/null || echo unknown)}
PIP=${PIP:-.venv/bin/pip}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(light models)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

base_image() {
  if "${PODMAN[@]}" image exists "$BASE"; then return; fi
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/base.tar"
  "${PODMAN[@]}" import --quiet "$work/base.tar" "$BASE" >/dev/null
}

build_options() {
  local ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
  mkdir -p "$work/built"
  {
    echo "[global]"
    echo "cert = /run/secrets/pip-ca"
    echo "find-links = /wheels/host /wheels/built"
    [ -z "${PIP_INDEX_URL:-}" ] || echo "index-url = $PIP_INDEX_URL"
  } >"$work/pip.conf"
  # A llama.cpp wheel compiled here before (by `make install`) spares the build 8 minutes.
  if [ -x "$PIP" ]; then
    "$PIP" cache list llama_cpp_python --format=abspath 2>/dev/null |
      xargs -r cp -t "$work/built"
  fi
  OPTIONS=(--network host --layers
    --secret "id=pip,src=$work/pip.conf" --secret "id=pip-ca,src=$ca"
    --volume "$work/built:/wheels/built:ro"
    --build-arg "PYTHON_IMAGE=$BASE"
    --build-arg "VERSION=$VERSION")
  if compgen -G "/opt/wheels/torch-*+cpu-*.whl" >/dev/null; then
    # The CPU torch lies on this disk: pip takes it from there, the default index is enough.
    OPTIONS+=(--volume /opt/wheels:/wheels/host:ro --build-arg "TORCH_INDEX_URL=https://pypi.org/simple")
  fi
}

for target in "${TARGETS[@]}"; do
  case "$target" in
    base) base_image ;;
    light | models)
      base_image
      [ -n "${OPTIONS+set}" ] || build_options
      "${PODMAN[@]}" build "${OPTIONS[@]}" -f deploy/docker/Dockerfile --target "$target" \
        -t "localhost/rag-$target:$TAG" . >&2
      echo "localhost/rag-$target:$TAG"
      ;;
    redis)
      base_image
      cat >"$work/Containerfile.redis" <<CONTAINERFILE
FROM $BASE
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
CONTAINERFILE
      "${PODMAN[@]}" build --network host --layers -f "$work/Containerfile.redis" \
        -t "localhost/rag-redis:$TAG" "$work" >&2
      echo "localhost/rag-redis:$TAG"
      ;;
    *) echo "unknown target: $target (base, light, models or redis)" >&2; exit 2 ;;
  esac
done
