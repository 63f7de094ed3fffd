# The registry keeps the order step modules are first imported in, which is the chain order
# only when `steps` imports them: import it before any test here imports a step module itself.
import outwork.filters.steps  # noqa: F401
