"""A streamed chat completion with the official OpenAI SDK, unmodified:
the gateway is reached only through HTTPS_PROXY (and its CA through
SSL_CERT_FILE), the way an agent's environment would be set up.

Prints one JSON line: the chunks received and whether any carried usage
(the client did not ask for it, so it must see none)."""

import json
import sys

import openai

client = openai.OpenAI(api_key="sk-not-a-real-key", max_retries=0, timeout=20)
stream = client.chat.completions.create(
    model=sys.argv[1] if len(sys.argv) > 1 else "gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello."}],
    stream=True,
)
chunks = 0
usage_seen = False
text = []
for chunk in stream:
    chunks += 1
    if getattr(chunk, "usage", None) is not None:
        usage_seen = True
    for choice in chunk.choices:
        if choice.delta and choice.delta.content:
            text.append(choice.delta.content)
print(json.dumps({"chunks": chunks, "usage_seen": usage_seen, "text": "".join(text)}))
