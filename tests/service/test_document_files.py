"""Documents given as files through the public port: PDF, HTML and DOCX become text with
pages and headings, a source says where it is, and hostile or broken files are refused with
a stable reason while nothing of their batch is stored."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_common.errors import InvalidArgument
from rag_common.security.identity import Identity
from rag_query.config import ApiKey, QuerySettings
from rag_query.conversion import media
from rag_query.conversion.sandbox import Limits, Sandbox
from tests.support import documents
from tests.support.suite import in_process_suite

KEYS = {"writer": ApiKey(tenant="acme", roles=["writer", "reader"])}
AUTH = [("authorization", "Bearer writer")]
ACME = Identity("t", "acme", frozenset())


def pdf(doc_id: str = "manuals/ember-40.pdf", content: bytes | None = None, **fields):
    return common_pb2.Document(
        id=doc_id, content=documents.kiln_manual_pdf() if content is None else content, **fields
    )


@pytest.fixture(scope="module")
async def suite(embedder, tmp_path_factory):
    settings = QuerySettings(port=0, api_keys=KEYS)
    async with in_process_suite(embedder, tmp_path_factory.mktemp("files"), settings) as suite:
        yield suite


@pytest.fixture(scope="module")
async def ingested(suite):
    stub = doc_grpc.DocumentServiceStub(suite.channel)
    reply = await stub.IngestDocuments(
        doc_pb.IngestDocumentsRequest(
            documents=[
                pdf(media_type=media.PDF),
                common_pb2.Document(id="web/greenhouse", content=documents.GREENHOUSE_HTML),
                common_pb2.Document(id="grants/orchard.docx", content=documents.grant_docx()),
            ]
        ),
        metadata=AUTH,
        timeout=60,
    )
    return {d.document_id: d for d in reply.documents}


async def ask(suite, question: str) -> pb.QueryResponse:
    stub = pb_grpc.QueryServiceStub(suite.channel)
    request = pb.QueryRequest(question=question, options=pb.QueryOptions(provider="extractive"))
    return await stub.Query(request, metadata=AUTH, timeout=30)


async def test_each_file_is_read_as_its_format_and_a_scanned_page_is_reported(ingested):
    manual = ingested["manuals/ember-40.pdf"]
    assert manual.media_type == media.PDF and manual.pages == 4
    assert list(manual.pages_without_text) == [4]  # the image-only page, reported
    assert ingested["web/greenhouse"].media_type == media.HTML
    assert ingested["grants/orchard.docx"].media_type == media.DOCX
    assert all(d.chunks >= 1 for d in ingested.values())


@pytest.mark.parametrize(
    ("question", "document", "page", "section", "words"),
    [
        (
            "At what temperature does the kiln warranty end?",
            "manuals/ember-40.pdf",
            3,
            "3.2 Limits",
            "1300 degrees",
        ),
        (
            "How many posts should each kiln shelf stand on?",
            "manuals/ember-40.pdf",
            2,
            "2 Loading",
            "three posts",
        ),
        # Short files are one chunk each, under their first heading; their own headings
        # and table rows stay in the text.
        (
            "When should I water plants in the greenhouse in winter?",
            "web/greenhouse",
            0,
            "Winter greenhouse care",
            "## Heating",  # within the 300 characters an answer shows
        ),
        (
            "How much of the orchard grant is for trees?",
            "grants/orchard.docx",
            0,
            "Community orchard grant",
            "Trees | 2400",
        ),
    ],
)
async def test_a_source_says_where_in_its_file_the_answer_is(
    suite, ingested, question, document, page, section, words
):
    reply = await ask(suite, question)
    top = reply.sources[0]
    assert (top.document_id, top.page, top.section) == (document, page, section), top
    assert words in top.text


async def test_a_page_is_read_without_its_navigation_banner_and_footer(suite, ingested):
    reply = await ask(suite, "Is there free delivery on orders over 40 euros?")
    for source in reply.sources:
        assert "Free delivery" not in source.text and "Privacy" not in source.text


async def test_titles_come_from_the_files_themselves(suite, ingested):
    reply = await ask(suite, "What does the orchard grant pay for?")
    titles = {s.document_id: s.title for s in reply.sources}
    assert titles["grants/orchard.docx"] == "Community orchard grant"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (pdf("bad", documents.encrypted_pdf()), "ENCRYPTED_DOCUMENT"),
        (pdf("bad", documents.truncated_pdf()), "UNREADABLE_DOCUMENT"),
        (pdf("bad", documents.zip_bomb_docx()), "DOCUMENT_TOO_COMPLEX"),
        (pdf("bad", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8), "UNSUPPORTED_MEDIA_TYPE"),
        (pdf("bad", documents.GREENHOUSE_HTML, media_type=media.PDF), "UNSUPPORTED_MEDIA_TYPE"),
        (pdf("bad", documents.deeply_nested_html()), "NO_TEXT"),
    ],
)
async def test_a_file_that_cannot_be_read_is_refused_and_its_batch_stores_nothing(
    suite, ingested, bad, reason
):
    stub = doc_grpc.DocumentServiceStub(suite.channel)
    before = await suite.retriever.count(ACME)
    good = pdf("manuals/second-copy.pdf")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[good, bad]), metadata=AUTH, timeout=60
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = status.error_info(refused.value)
    assert info.reason == reason, refused.value.details()
    assert info.metadata["field"] == "documents[1].content"
    assert await suite.retriever.count(ACME) == before


async def test_text_and_content_together_are_refused(suite):
    stub = doc_grpc.DocumentServiceStub(suite.channel)
    both = pdf("both", text="and some text")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[both]), metadata=AUTH, timeout=60
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status.error_info(refused.value).metadata["field"] == "documents[0]"


def long_page(paragraphs: int = 60_000) -> bytes:
    """About 5 MB of HTML: seconds of a parser's CPU."""
    body = b"".join(
        b"<p>Paragraph %d about kilns, glazes and how clay shrinks as it dries.</p>" % i
        for i in range(paragraphs)
    )
    return b"<html><body><main>" + body + b"</main></body></html>"


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        (Limits(cpu_s=0.5, max_chars=10_000_000), "s of CPU"),
        (Limits(wall_s=0.2, max_chars=10_000_000), "0.2 s"),
        (Limits(memory_bytes=200 * 1024 * 1024, max_chars=10_000_000), "memory"),
    ],
)
async def test_a_conversion_past_its_limits_is_stopped_and_refused(limits, says):
    with pytest.raises(InvalidArgument) as refused:
        await Sandbox(limits).convert(long_page(), media.HTML, field="documents[0].content")
    assert refused.value.reason == "DOCUMENT_TOO_COMPLEX"
    assert says in refused.value.message


async def test_questions_are_answered_while_a_heavy_file_is_converted(suite, ingested):
    stub = doc_grpc.DocumentServiceStub(suite.channel)
    heavy = common_pb2.Document(id="heavy", content=long_page())
    converting = asyncio.ensure_future(
        stub.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[heavy]), metadata=AUTH, timeout=60
        )
    )
    await asyncio.sleep(0.2)  # its conversion under way, in its sandbox
    reply = await ask(suite, "How many posts should each kiln shelf stand on?")
    assert "three posts" in reply.sources[0].text
    assert not converting.done()  # answered while the conversion still ran
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await converting  # past the converted-text limit: refused, as a bomb would be
    assert status.error_info(refused.value).reason == "DOCUMENT_TOO_COMPLEX"
