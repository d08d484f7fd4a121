"""The explorer's pages: one module a page, each with ``register(ctx) -> APIRouter``."""
