"""`rag documents list|show|erase`: what the caller's tenant has stored, and its erasure."""

from __future__ import annotations

import argparse
import datetime

from rich import box
from rich.table import Table

from rag.v1 import admin_service_pb2 as admin_pb
from rag.v1 import admin_service_pb2_grpc as admin_grpc
from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as pb
from rag.v1 import document_service_pb2_grpc as pb_grpc
from rag_cli.launcher import client_channel
from rag_cli.output import bearer, console


async def documents(args: argparse.Namespace) -> int:
    """The `documents` command group."""
    async with client_channel(args.target) as channel:
        if args.action == "list":
            return await _list(pb_grpc.DocumentServiceStub(channel), args)
        if args.action == "show":
            return await _show(pb_grpc.DocumentServiceStub(channel), args)
        return await _erase(admin_grpc.AdminServiceStub(channel), args)


async def _list(stub: pb_grpc.DocumentServiceStub, args: argparse.Namespace) -> int:
    filters = [
        common_pb2.FilterCondition(
            key=key, operator=common_pb2.FILTER_OPERATOR_EQUALS, values=[value]
        )
        for key, value in (item.split("=", 1) for item in args.where)
    ]
    request = pb.ListDocumentsRequest(
        page_size=args.page_size, page_token=args.page_token, filters=filters
    )
    page = await stub.ListDocuments(request, metadata=bearer(args.api_key), timeout=args.timeout)
    # One line each, never cut or wrapped: ids are long paths, and scripts read the lines.
    for d in page.documents:
        pages = f", {d.pages} pages" if d.pages else ""
        console.print(
            f"{d.document_id}  {_when(d.ingested_at.ToSeconds())}  {_kind(d.media_type)}, "
            f"{d.chunks} chunks{pages}  {d.title}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    if page.next_page_token:
        console.print(f"more: --page-token {page.next_page_token}", highlight=False)
    return 0


async def _show(stub: pb_grpc.DocumentServiceStub, args: argparse.Namespace) -> int:
    request = pb.GetDocumentRequest(document_id=args.document_id)
    reply = await stub.GetDocument(request, metadata=bearer(args.api_key), timeout=args.timeout)
    d = reply.document
    table = Table(show_header=False, box=box.SIMPLE)
    for field, value in (
        ("document", d.document_id),
        ("title", d.title),
        ("source", d.source),
        ("media type", d.media_type or "text"),
        ("characters", f"{d.chars:,}"),
        ("chunks", str(d.chunks)),
        ("pages", str(d.pages or "")),
        ("sha256", d.content_sha256),
        ("ingested", f"{_when(d.ingested_at.ToSeconds())} by {d.ingested_by or '?'}"),
        *((f"metadata {k}", v) for k, v in sorted(d.metadata.items())),
    ):
        table.add_row(field, value)
    console.print(table)
    return 0


async def _erase(stub: admin_grpc.AdminServiceStub, args: argparse.Namespace) -> int:
    request = admin_pb.EraseTenantDataRequest(confirm_tenant=args.tenant)
    reply = await stub.EraseTenantData(request, metadata=bearer(args.api_key), timeout=args.timeout)
    console.print(
        f"erased tenant {args.tenant}: {reply.deleted_documents} documents, "
        f"{reply.deleted_chunks} chunks, and every cached answer of them"
    )
    return 0


def _kind(media_type: str) -> str:
    return media_type.rsplit("/", 1)[-1].split(".")[-1] if media_type else "text"


def _when(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`rag documents` and its three actions."""
    s = sub.add_parser("documents", help="list, show or erase the tenant's documents")
    actions = s.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the tenant's documents, newest first")
    listing.add_argument("--page-size", type=int, default=50)
    listing.add_argument("--page-token", default="", help="from the previous page's last line")
    listing.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE", help="metadata equals"
    )
    show = actions.add_parser("show", help="what is stored of one document")
    show.add_argument("document_id")
    erase = actions.add_parser("erase", help="erase every document of the tenant (admin)")
    erase.add_argument("--tenant", required=True, help="the key's own tenant, typed out")
    s.set_defaults(func=documents)
