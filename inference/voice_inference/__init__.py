"""voice_inference: the aiohttp text-to-speech server that runs inside each VoiceService pod.

Layers, lowest first: settings and errors; audio encoding and text splitting; engines (the
model behind one small interface); the scheduler that owns the engine; the HTTP face (request
parsing, handlers, middlewares) assembled by ``app.build_app``; ``cli`` starts it all.
"""

__version__ = "0.1.0"
