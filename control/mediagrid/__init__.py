"""mediagrid control plane: tracker, id service, storage shim, agent, gateway and client."""

__version__ = "0.1.0"
