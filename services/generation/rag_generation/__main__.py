"""Start the generation service: `python -m rag_generation`."""

from __future__ import annotations

import asyncio

from rag_common import logs
from rag_common.server import ServiceHost, run_service
from rag_generation.adapters.extractive import ExtractiveModel
from rag_generation.config import GenerationSettings
from rag_generation.providers import ChatModel
from rag_generation.router import Generator
from rag_generation.servicer import servicers


def build_provider(name: str, settings: GenerationSettings) -> ChatModel:
    """The provider called `name`."""
    if name == "extractive":
        return ExtractiveModel()
    if name == "local":
        from rag_generation.adapters.llama_local import LlamaCppModel

        return LlamaCppModel(
            settings.local_model_path,
            context_window=settings.local_context_window,
            threads=settings.local_threads,
            temperature=settings.temperature,
        )
    raise ValueError(f"unknown provider {name!r}; known: local, extractive")


def build_generator(settings: GenerationSettings) -> Generator:
    """A Generator over the configured providers, in order."""
    providers = [build_provider(name, settings) for name in settings.providers]
    return Generator(providers, default_max_tokens=settings.default_max_tokens)


async def serve(settings: GenerationSettings) -> None:
    """Serve until SIGTERM."""
    generator = build_generator(settings)
    host = ServiceHost(settings, servicers(generator))
    await run_service("generation", host, warm_up=generator.start, close=generator.close)


def main() -> None:
    """Read settings, configure logs and serve until SIGTERM."""
    settings = GenerationSettings()
    logs.configure("generation", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
