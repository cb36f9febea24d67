"""Cartesia: `/cartesia/tts/bytes`; realtime text-to-speech on `tts/websocket`.

The realtime credential and version travel in the query as Cartesia takes
them (`?cartesia_version=2024-06-10&api_key=...`).
"""

from engine.provider import Auth, ProviderSpec

PROVIDER = ProviderSpec(
    slug="cartesia",
    base_url="https://api.cartesia.ai",
    auth=Auth(header="x-api-key", prefix=""),
    realtime_path="tts/websocket",
)
