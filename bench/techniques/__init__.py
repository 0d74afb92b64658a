"""Optimization techniques: each a params schema and an ``apply(model, params, ctx)`` that
returns ``(model, info)``; ``info`` says what was touched, so a no-op is visible."""
