"""The onnx backends against torch on the real all-MiniLM-L6-v2: the same vectors from the
exported file, the export made once and reused, int8 kept apart, and clear refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydantic import ValidationError

from rag_embedding.adapters.onnx_model import OnnxModel
from rag_embedding.adapters.sentence_transformer import (
    SentenceTransformerModel,
    packaged_model_path,
)
from rag_embedding.config import EmbeddingSettings
from rag_embedding.embedder import Purpose

TEXTS = [
    "How do I convert a string to a number?",
    "ls lists directory contents; -l uses a long listing format.",
    "word " * 400,  # past the model's 256 tokens: truncated the same way by both
    "é",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_vectors():
    return np.array(SentenceTransformerModel("").encode(TEXTS, Purpose.DOCUMENT))


def test_onnx_gives_torchs_vectors_from_a_file_exported_once(cache_dir, torch_vectors):
    model = OnnxModel("", cache_dir=cache_dir, batch_size=2)
    [exported] = cache_dir.glob("*/model.onnx")
    written = exported.stat().st_mtime_ns

    vectors = np.array(model.encode(TEXTS, Purpose.DOCUMENT))

    assert model.dimension == 384 and model.max_sequence_length == 256
    assert model.name == "sentence-transformers/all-MiniLM-L6-v2"  # shares torch's cache keys
    assert np.all((vectors * torch_vectors).sum(axis=1) > 0.99999)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = OnnxModel("", cache_dir=cache_dir)  # a restart or a replica: the file is reused
    assert exported.stat().st_mtime_ns == written
    assert np.allclose(np.array(again.encode(TEXTS, Purpose.DOCUMENT)), vectors, atol=1e-6)
    assert not [p for p in exported.parent.iterdir() if p.name.endswith(".tmp")]


def test_int8_is_close_but_keyed_apart(cache_dir, torch_vectors):
    model = OnnxModel("", cache_dir=cache_dir, int8=True)

    vectors = np.array(model.encode(TEXTS, Purpose.DOCUMENT))

    assert "+int8" in model.name  # its vectors never come out of torch's cache entries
    similarity = (vectors * torch_vectors).sum(axis=1)
    # Close enough to keep retrieval (per-column scales), yet not the same vectors.
    assert np.all(similarity > 0.97) and not np.all(similarity > 0.99999)


def test_a_model_the_backend_cannot_run_is_refused_by_name(tmp_path, cache_dir):
    folder = tmp_path / "max-pooled"
    shutil.copytree(packaged_model_path(), folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(
        json.dumps(config | {"pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True})
    )

    with pytest.raises(ValueError, match="use the torch backend"):
        OnnxModel(str(folder), cache_dir=cache_dir)
    with pytest.raises(ValueError, match="local model folder"):
        OnnxModel("sentence-transformers/all-MiniLM-L6-v2", cache_dir=cache_dir)


def test_a_gpu_device_needs_the_torch_backend():
    with pytest.raises(ValidationError, match="RAG_EMBEDDING_BACKEND=torch"):
        EmbeddingSettings(device="cuda")
    assert EmbeddingSettings(device="cuda", backend="torch").device == "cuda"
