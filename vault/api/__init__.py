"""The vault's web layer: FastAPI routers that parse, authorize, call a service and shape the answer."""
