"""ragsync keeps a RAG system's Qdrant collection in step with the records of a platform's microservices.

The data path: producers publish `SyncRequest`s, the fetcher agent pages through the Coordinator and emits one
`ItemEvent` per record, the embedding consumer group embeds items in batches and writes them to Qdrant.
"""

from ragsync.events import DeadLetter, ItemEvent, SyncRequest
from ragsync.settings import Settings

__all__ = ["DeadLetter", "ItemEvent", "Settings", "SyncRequest"]
__version__ = "0.1.0"
