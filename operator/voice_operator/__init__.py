"""voice_operator: the kopf operator that turns VoiceService objects into serving GPU pods.

Layers, lowest first: ``contract`` (the pods' port, health paths and VOICE_* names), ``spec``
(the API as pydantic models; ``crd`` generates the CRD from it), ``config`` and ``naming``;
``builders`` (pure spec -> manifest functions); ``compare`` and ``status`` (drift and
conditions, pure); ``kube`` (the counted API client); ``reconcile`` (one VoiceService);
``leader`` and ``controller`` (who reconciles what, when); ``handlers`` (kopf); ``cli``.
``fetch`` is the checkpoint-fetch Job's program. See operator/README.md.
"""
