"""voice_operator: the kopf operator that turns VoiceService objects into serving GPU pods."""
