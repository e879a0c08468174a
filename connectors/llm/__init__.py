"""The LLM: prompt and answer protocol (pure), the OpenAI-compatible client with its cache and
typed errors, and the event-loop thread the requests run on."""
