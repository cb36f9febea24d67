"""Deepgram: speech to text and back; realtime transcription on `v1/listen`."""

from engine.provider import Auth, ProviderSpec

PROVIDER = ProviderSpec(
    slug="deepgram",
    base_url="https://api.deepgram.com",
    auth=Auth(header="authorization", prefix="Token "),
    realtime_path="v1/listen",
)
