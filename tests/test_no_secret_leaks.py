"""After a run with stored keys and tokens, no key or token value is anywhere a user can look.

The gateway runs as a user starts it, with its access log on and secrets given
both inline and through environment variables. Every kind of request is sent,
successful and refused; then the server log, every file under the data
directory and every response (status line, headers and body) are searched for
each secret. The stored keys must have reached the fake upstream, so the
search is not looking at a run where the keys were never used.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import openai
import trio
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from server.fake_upstream import FakeUpstream
from tests.conftest import ACCOUNT, step
from tests.test_shared_limits import gateway_process

SECRETS = {
    "inline_token": "tok-inline-8f3a1c",
    "env_token": "tok-env-27d94b",
    "inline_key": "sk-inline-5e1d0a",
    "env_key": "sk-env-c4b7e2",
    "anthropic_key": "sk-ant-9a6f13",
}


async def test_no_secret_anywhere(nursery: trio.Nursery, tmp_path: Path) -> None:
    fake = FakeUpstream()
    port = await nursery.start(fake.serve)
    data_dir = tmp_path / "data"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[server]\ndata_dir = "{data_dir}"\nws_port = 0\naccess_log = true\ngrace_period = 1\n'
        f'[providers.openai]\nbase_url = "http://127.0.0.1:{port}/v1"\n'
        f'[providers.anthropic]\nbase_url = "http://127.0.0.1:{port}"\n'
        "[gateways.team]\n"
        f'tokens = ["{SECRETS["inline_token"]}", {{ env = "TEAM_TOKEN" }}]\n'
        "rate_limit = { limit = 9, interval = 3600 }\n"
        "[gateways.team.keys.openai]\n"
        f'default = "{SECRETS["inline_key"]}"\n'
        'prod = { env = "OPENAI_PROD_KEY" }\n'
        "[gateways.team.keys.anthropic]\n"
        f'default = "{SECRETS["anthropic_key"]}"\n'
    )
    env = {"TEAM_TOKEN": SECRETS["env_token"], "OPENAI_PROD_KEY": SECRETS["env_key"]}
    os.environ.update(env)  # the gateway process inherits them
    try:
        async with gateway_process(config, tmp_path / "gateway.log") as base:
            responses = await exercise(base, tmp_path)
    finally:
        for name in env:
            del os.environ[name]

    sent = [r.headers.get("authorization", r.headers.get("x-api-key")) for r in fake.requests]
    assert f"Bearer {SECRETS['inline_key']}" in sent
    assert f"Bearer {SECRETS['env_key']}" in sent
    assert SECRETS["anthropic_key"] in sent
    upstream = json.dumps([r.headers for r in fake.requests])
    assert SECRETS["inline_token"] not in upstream and SECRETS["env_token"] not in upstream

    places = {"server log": (tmp_path / "gateway.log").read_text(), "responses": responses}
    if data_dir.exists():
        for path in data_dir.rglob("*"):
            if path.is_file():
                places[str(path)] = path.read_bytes().decode("latin-1")
    assert "gateway.access" in places["server log"]  # the access log was on
    for where, text in places.items():
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} found in {where}"


async def exercise(base: str, tmp_path: Path) -> str:
    """Every kind of request, allowed and refused; returns all responses as text."""
    url = f"{base}/v1/{ACCOUNT}/team"
    token = {"cf-aig-authorization": f"Bearer {SECRETS['env_token']}"}
    seen: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(path: str, body: object, headers: dict[str, str]) -> None:
            seen.append(await client.post(url + path, json=body, headers=headers))

        no_key = step()
        del no_key["headers"]["Authorization"]
        await post("", [no_key], token)  # stored default key
        await post("", [no_key], {**token, "cf-aig-byok-alias": "prod"})  # from the environment
        await post("", [no_key], {**token, "cf-aig-byok-alias": "nope"})  # 2040
        await post("", [no_key], {"cf-aig-authorization": "Bearer wrong"})  # 401
        await post("", [no_key], {})  # 401
        await post("/openai/chat/completions", {"model": "m"}, {"x-fake-status": "401", **token})
        await post("/anthropic/v1/messages", {"model": "m", "max_tokens": 8}, token)
        await post("", [no_key, no_key], {**token, "x-fake-status": "500"})
        sdk = openai.AsyncOpenAI(
            api_key=SECRETS["inline_token"], base_url=f"{url}/openai", max_retries=0
        )
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=[])  # token as the key
    log = await trio.Path(tmp_path / "gateway.log").read_text()
    ws_url = re.search(r"WebSocket listening on (ws://\S+)", log)[1] + f"/v1/{ACCOUNT}/team/"
    frame = {"type": "universal.create", "request": {**no_key, "eventId": "e1"}}

    def websocket() -> list[str]:
        texts = []
        with connect(ws_url, additional_headers=token, open_timeout=10) as ws:
            ws.send(json.dumps(frame))
            texts.append(str(ws.recv(timeout=10)))
        try:
            connect(ws_url, additional_headers={"cf-aig-authorization": "wrong"}).close()
        except InvalidStatus as exc:
            texts.append(f"{exc.response.status_code} {exc.response.headers} {exc.response.body!r}")
        return texts

    frames = await trio.to_thread.run_sync(websocket)
    assert '"universal.created"' in frames[0] and frames[1].startswith("401")
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):  # past the rate limit
            await post("", [no_key], token)
        assert [r.status_code for r in seen][-1] == 429

    return "\n".join([*(f"{r.status_code} {dict(r.headers)} {r.text}" for r in seen), *frames])
