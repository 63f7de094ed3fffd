"""The asyncio side: listeners, client connections, routing, upstream pools, admin."""
