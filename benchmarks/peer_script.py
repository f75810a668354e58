"""The peer of `ragsync sync --service payment-service`, as a LlamaIndex user would write it: one script.

    python -m benchmarks.peer_script --records 1000 --path DIR

Imports LlamaIndex, loads the packaged all-MiniLM-L6-v2 through `HuggingFaceEmbedding`, builds one `Document` per
payment-service record (the text ragsync embeds, with the record's id, tenant and service as metadata), and runs an
`IngestionPipeline` into a `QdrantVectorStore` on a local path in DIR. The pipeline's docstore is persisted in DIR
too, so a second run with the same DIR skips the unchanged documents: the peer's unchanged re-sync. It prints one
JSON line: documents built, documents embedded, points in the collection.

Where it is easier on the peer than on ragsync, on purpose:
- the records come straight from `demo_record`, in this process, not paged from the Coordinator over gRPC, and
  there is no broker;
- only the embedding model transforms the documents (no splitter: every record is one short chunk), and the
  transformation cache is off (the docstore already skips unchanged documents; the cache would only add work to a
  first run);
- it imports `ragsync.items` to render the same texts (about 0.2 s, mostly pydantic, which LlamaIndex imports
  anyway).

Nothing is downloaded: the model is a local folder and HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set before
transformers is imported; LlamaIndex's NLTK and tiktoken data ship in its wheel and this pipeline reads neither.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_index.core import Document
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from qdrant_client import QdrantClient

SERVICE = "payment-service"
TENANT = "default-tenant"  # the tenant `ragsync sync` writes to (DEFAULT_TENANT_ID)
MODEL = "all-MiniLM-L6-v2"
BATCH = 32  # texts per model call, as ragsync's EMBEDDING_BATCH_SIZE
COLLECTION = "payments"
METADATA = ["id", "tenant", "service"]


def offline() -> None:
    """No hub look-ups: set before transformers and huggingface_hub are imported, which read them once."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def embedding() -> HuggingFaceEmbedding:
    """The packaged model through LlamaIndex's sentence-transformers wrapper, on the CPU."""
    offline()
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from ragsync.model.encoder import model_path

    return HuggingFaceEmbedding(model_name=model_path(MODEL), embed_batch_size=BATCH, device="cpu")


def records(count: int) -> list[tuple[str, str]]:
    """(record id, text) of the first `count` payment-service records: the texts ragsync embeds."""
    from ragsync.demo.records import demo_record
    from ragsync.items import ItemRules
    from ragsync.schemas import Schemas

    rules = ItemRules(Schemas.load(None))
    listed = [demo_record(SERVICE, index) for index in range(count)]
    return [(str(record["id"]), rules.text(record, SERVICE)) for record in listed]


def documents(items: list[tuple[str, str]]) -> list[Document]:
    """One Document per record. Its id is a UUID from the record's key (Qdrant takes UUIDs or integers), and the
    metadata stays out of the embedded text so the model sees exactly ragsync's text."""
    from llama_index.core import Document

    return [
        Document(
            id_=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{TENANT}/{SERVICE}/{item_id}")),
            text=text,
            metadata={"id": item_id, "tenant": TENANT, "service": SERVICE},
            excluded_embed_metadata_keys=METADATA,
            excluded_llm_metadata_keys=METADATA,
        )
        for item_id, text in items
    ]


def ingestion(
    embed_model: HuggingFaceEmbedding, client: QdrantClient, collection: str, with_docstore: bool
) -> IngestionPipeline:
    """Documents to vectors to `collection`; `with_docstore`: a SimpleDocumentStore skips unchanged documents."""
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    # QdrantVectorStore indexes doc_id, which local mode ignores with a warning on every new collection.
    warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
    return IngestionPipeline(
        transformations=[embed_model],
        vector_store=QdrantVectorStore(collection_name=collection, client=client),
        docstore=SimpleDocumentStore() if with_docstore else None,
        disable_cache=True,
    )


def sync(count: int, path: Path) -> dict[str, int]:
    """The whole job: model, documents, pipeline (its docstore loaded from `path` when there), persisted."""
    from qdrant_client import QdrantClient

    embed_model = embedding()
    built = documents(records(count))
    path.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(path / "qdrant"))
    try:
        pipeline = ingestion(embed_model, client, COLLECTION, with_docstore=True)
        storage = path / "pipeline"
        if storage.exists():
            pipeline.load(str(storage))
        embedded = pipeline.run(documents=built)
        pipeline.persist(str(storage))
        points = client.count(COLLECTION).count
    finally:
        client.close()
    return {"documents": len(built), "embedded": len(embedded), "points": points}


def main() -> None:
    """Parse the arguments, sync, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1000, help="payment-service records to sync")
    parser.add_argument("--path", type=Path, required=True, help="folder of the Qdrant store and the docstore")
    arguments = parser.parse_args()
    print(json.dumps(sync(arguments.records, arguments.path)))


if __name__ == "__main__":
    main()
