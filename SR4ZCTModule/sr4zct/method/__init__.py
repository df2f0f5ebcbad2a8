"""The method's steps (docs/method.md): geometry, acquisition model, networks, training, inference, fusion."""
