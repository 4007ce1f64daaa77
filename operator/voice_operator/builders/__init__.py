"""Pure functions from a VoiceService to the manifests of its children.

``common`` (context, metadata, security), then one module per child: ``deployment``,
``service``, ``checkpoint`` (claim and fetch Job), ``autoscaling`` (HPA), ``disruption``
(PDB). ``reconcile`` calls them and applies the results; nothing here talks to the API.
"""
