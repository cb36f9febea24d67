"""ElevenLabs: `/elevenlabs/v1/text-to-speech/{voice}`; realtime Conversational AI.

`/elevenlabs?agent_id=A` opens `v1/convai/conversation?agent_id=A`; browsers
send the key as the subprotocol `xi-api-key.{key}`.
"""

from engine.provider import Auth, ProviderSpec

PROVIDER = ProviderSpec(
    slug="elevenlabs",
    base_url="https://api.elevenlabs.io",
    auth=Auth(header="xi-api-key", prefix=""),
    realtime_path="v1/convai/conversation",
    realtime_subprotocol="xi-api-key.",
)
