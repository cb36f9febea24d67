"""Google AI Studio (Gemini): `/google-ai-studio/v1beta/models/...`; realtime as `google`.

Realtime is Gemini Live (`BidiGenerateContent`): Cloudflare's form
`/google?api_key=KEY` reaches it with the key in `x-goog-api-key`.
"""

from engine.provider import Auth, ProviderSpec

PROVIDER = ProviderSpec(
    slug="google-ai-studio",
    base_url="https://generativelanguage.googleapis.com",
    auth=Auth(header="x-goog-api-key", prefix="", query="key"),
    usage="google",
    realtime_path="ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
    realtime_query_key="api_key",
    aliases=("google",),
)
