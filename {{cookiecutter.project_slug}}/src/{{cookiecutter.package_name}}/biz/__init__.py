"""The biz layer: domain rules and use cases, free of transports and storage."""
