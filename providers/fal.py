"""Fal: `/fal/fal-ai/fast-sdxl` -> https://fal.run/fal-ai/fast-sdxl.

Realtime is Fal's HTTP-over-WebSocket on `ws.fal.run` (`/fal/fal-ai/{app}`);
browsers send the key as the subprotocol `fal-api-key.{key}`.
"""

from engine.provider import Auth, ProviderSpec

PROVIDER = ProviderSpec(
    slug="fal",
    base_url="https://fal.run",
    auth=Auth(header="authorization", prefix="Key "),
    realtime_base_url="https://ws.fal.run",
    realtime_subprotocol="fal-api-key.",
)
