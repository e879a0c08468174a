"""Gamma (Polymarket's market metadata API): wire format (`protocol`), pure change detection
(`changes`), HTTP client with typed errors (`client`), paging poller (`poller`) and the Bytewax
event source (`source`)."""
